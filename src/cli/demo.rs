//! `drconv demo`: the library's demo (`drconv::demo`), the same as `cargo run --example demo`.

use std::process::ExitCode;

pub use drconv::demo::DemoArgs as Args;

use super::CliError;

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    print!("{}", drconv::demo::run_blocking(&args)?);
    Ok(ExitCode::SUCCESS)
}
