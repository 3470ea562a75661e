//! `drconv inspect FILE`: the DRConv2d layers in a model file (safetensors, or a PyTorch
//! checkpoint: a `state_dict`, a whole pickled model or a training checkpoint), so a user sees
//! what the crate will load before writing code.

use std::path::PathBuf;
use std::process::ExitCode;

use drconv::weights::{find_layers, FoundLayer};

use super::{say, CliError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the layers as one JSON array.
    #[arg(long)]
    json: bool,
    /// A safetensors file (e.g. `safetensors.torch.save_file(model.state_dict(), FILE)`) or a
    /// PyTorch checkpoint (`torch.save(model.state_dict() or model or {'model': model}, FILE)`).
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let bytes = std::fs::read(&args.file)
        .map_err(|e| CliError(format!("cannot read {}: {e}", args.file.display())))?;
    let layers =
        find_layers(&bytes).map_err(|e| CliError(format!("{}: {e}", args.file.display())))?;
    if args.json {
        let text = serde_json::to_string_pretty(&layers).map_err(|e| CliError(e.to_string()))?;
        say(&text)?;
        return Ok(ExitCode::SUCCESS);
    }
    say(table(&layers, &args.file.display().to_string()))?;
    Ok(ExitCode::SUCCESS)
}

/// The table: one row per layer, then a total.
fn table(layers: &[FoundLayer], file: &str) -> String {
    if layers.is_empty() {
        return format!("{file}: no DRConv2d layer (no tensor named [PREFIX]conv_guide.bias)");
    }
    let width = layers
        .iter()
        .map(|l| display_prefix(l).len())
        .max()
        .unwrap_or(0)
        .max("prefix".len());
    let mut out = format!(
        "{file}: {} DRConv2d layer(s)\n{:<width$}  {:>5}  {:>5}  {:>2}  {:>3}  {:>10}\n",
        layers.len(),
        "prefix",
        "in",
        "out",
        "k",
        "r",
        "parameters"
    );
    for l in layers {
        out += &format!(
            "{:<width$}  {:>5}  {:>5}  {:>2}  {:>3}  {:>10}\n",
            display_prefix(l),
            l.in_channels,
            l.out_channels,
            l.kernel_size,
            l.region_num,
            l.parameters
        );
    }
    let total: usize = layers.iter().map(|l| l.parameters).sum();
    out += &format!(
        "total {total} parameters; stride, padding and dilation are not stored in the tensors \
         (load with drconv::weights::load_safetensors_with_prefix and the model's values)"
    );
    out
}

fn display_prefix(l: &FoundLayer) -> &str {
    if l.prefix.is_empty() {
        "(none)"
    } else {
        &l.prefix
    }
}
