//! `drconv demo`: the library's demo (`drconv::demo`), the same as `cargo run --example demo`.

use std::process::ExitCode;

pub use drconv::internal::demo::DemoArgs as Args;

use super::{say, CliError};

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let report = drconv::internal::demo::run_blocking(&args)?;
    say(report.trim_end())?;
    Ok(ExitCode::SUCCESS)
}
