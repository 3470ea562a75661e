//! The `drconv` command line. Each subcommand lives in its own file with an `Args` struct
//! (clap derive) and `fn run(args) -> Result<ExitCode, CliError>`; adding one is that file plus
//! one line in the `commands!` list below.

use std::process::ExitCode;

use clap::Parser;

mod bench;
mod demo;
mod info;
mod inspect;
mod plan;
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

/// The shader variants forced by the `DRCONV_*` switches (A/B runs of `bench` and `verify`):
/// `DRCONV_CORR=gemm|staged|direct|direct4|channel_last`,
/// `DRCONV_KERNEL_GEN=blocked|registers|unrolled_k3|elements`, `DRCONV_BWD=gather|region_lists` (the
/// older spellings `cl4`, `main`, `r8`, `k3`, `lists` too), `DRCONV_CORR_UBO=0` (kernel rows
/// never a uniform kernel) or `=1` (one wherever the shape rule allows, the fused correlation's
/// per-region uniform bindings taken without timing them against the plan without), `DRCONV_INDIRECT=0`
/// (the fused grid sized on the host), `DRCONV_SLICES=N` (the GEMM correlation's K slices) and
/// `DRCONV_COMPUTE_UNITS=N` (the compute units the GPU family fills; 128 assumed). The library
/// itself reads no environment variable: this turns them into `ContextOptions::variants`.
pub fn variant_overrides() -> Result<drconv::VariantOverrides, CliError> {
    fn var<T: std::str::FromStr<Err = String>>(name: &str) -> Result<Option<T>, CliError> {
        match std::env::var(name) {
            Ok(v) => v
                .parse()
                .map(Some)
                .map_err(|e| CliError(format!("{name}: {e}"))),
            Err(_) => Ok(None),
        }
    }
    fn off(name: &str) -> Option<bool> {
        (std::env::var(name).as_deref() == Ok("0")).then_some(false)
    }
    let mut o = drconv::VariantOverrides::default();
    o.correlation = var("DRCONV_CORR")?;
    o.kernel_gen = var("DRCONV_KERNEL_GEN")?;
    o.backward = var("DRCONV_BWD")?;
    o.uniform_kernel = match std::env::var("DRCONV_CORR_UBO").as_deref() {
        Ok("0") => Some(false),
        Ok("1") => Some(true),
        _ => None,
    };
    o.device_grid = off("DRCONV_INDIRECT");
    let count = |name: &str| match std::env::var(name) {
        Ok(v) => match v.parse::<u32>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(CliError(format!("{name}: {v:?} is not a positive count"))),
        },
        Err(_) => Ok(None),
    };
    o.k_slices = count("DRCONV_SLICES")?;
    o.compute_units = count("DRCONV_COMPUTE_UNITS")?;
    Ok(o)
}

/// The default adapter (`WGPU_BACKEND` respected) with the `DRCONV_*` variant switches.
pub async fn context() -> Result<std::sync::Arc<drconv::GpuContext>, CliError> {
    let opts = drconv::ContextOptions::default().variants(variant_overrides()?);
    Ok(drconv::GpuContext::with_options(opts).await?)
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
    /// Every dispatch of a layer's plan with its counts, and a GPU's roofline (`--profile h100`).
    Plan => plan,
    /// Watch DRConv learn regions: train on a photo and write outputs, region map, loss plot.
    Demo => demo,
    /// List the DRConv2d layers in a safetensors model file (prefix, channels, k, r, parameters).
    Inspect => inspect,
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
    // The crate's and wgpu's warnings reach the terminal (RUST_LOG=info or debug for more).
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
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
