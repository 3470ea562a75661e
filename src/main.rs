//! The `drconv` binary; the subcommands live in `src/cli/` (native only, not part of the library).

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
