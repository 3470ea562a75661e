//! The `drconv` command line. Each subcommand lives in its own file with an `Args` struct
//! (clap derive) and `fn run(args) -> Result<ExitCode, CliError>`; adding one is that file plus
//! one line in the `commands!` list below.

use std::process::ExitCode;

use clap::Parser;

mod bench;
mod demo;
mod info;
mod verify;

/// Why a subcommand stopped early. Reported on stderr, exit code 2.
#[derive(Debug)]
pub struct CliError(pub String);

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError(e.to_string())
    }
}

/// Prints `text` and a newline on stdout. A closed pipe (`drconv verify ... | head`) ends the
/// command quietly instead of panicking like `println!`.
pub fn say(text: impl std::fmt::Display) -> Result<(), CliError> {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(CliError(String::new())),
        r => Ok(r?),
    }
}

/// Declares the `Command` enum and its dispatch from `Variant => module` pairs.
macro_rules! commands {
    ($($(#[$doc:meta])* $variant:ident => $module:ident,)+) => {
        #[derive(Debug, clap::Subcommand)]
        enum Command {
            $($(#[$doc])* $variant($module::Args),)+
        }

        impl Command {
            fn run(self) -> Result<ExitCode, CliError> {
                match self {
                    $(Command::$variant(args) => $module::run(args),)+
                }
            }
        }
    };
}

commands! {
    /// Run golden cases on the GPU (or the CPU reference) and compare every tensor.
    Verify => verify,
    /// List every adapter wgpu finds, with its features and key limits.
    Info => info,
    /// Time the fused and all-regions forwards at the benchmark shapes next to a plain GEMM.
    Bench => bench,
    /// Watch DRConv learn regions: train on a photo and write outputs, region map, loss plot.
    Demo => demo,
}

/// DRConv (Dynamic Region-Aware Convolution) on wgpu.
#[derive(Debug, Parser)]
#[command(name = "drconv", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Parses the arguments and runs the subcommand: exit 0 on success, 1 when a check fails,
/// 2 on usage, load or setup errors (clap's own parse errors exit 2 too).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.run() {
        Ok(code) => code,
        // An empty message: stdout was closed, nothing left to say.
        Err(CliError(msg)) if msg.is_empty() => ExitCode::from(2),
        Err(CliError(msg)) => {
            eprintln!("drconv: error: {msg}");
            ExitCode::from(2)
        }
    }
}
