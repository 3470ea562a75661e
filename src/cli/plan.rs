//! `drconv plan`: the plan report (every dispatch with its workgroups, workgroup memory, FLOPs
//! and least bytes; with `--profile`, the roofline floor and how much of the GPU each fills), for
//! the benchmark's shapes (S1-S4, Y1, Y16) or layers given on the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use drconv::internal::bench::plan_report::{plan_report, plan_table, Report};
use drconv::internal::bench::{ALL_SHAPES, SHAPE_TAGS};
use drconv::internal::gpu::decide::Target;
use drconv::internal::gpu::profile::GpuProfile;
use drconv::{DrConvConfig, Mode};

use super::{say, CliError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A named GPU (h100, h200, a100, rtx4090, rx7900xtx, m2): its variants and its roofline.
    /// Without it, the default adapter's variants (the `DRCONV_*` switches applied), no roofline.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Only this benchmark shape (1-4: S1-S4, 5: Y1, 6: Y16); repeat for several.
    #[arg(long = "shape", value_name = "N", value_parser = clap::value_parser!(u8).range(1..=6))]
    shapes: Vec<u8>,
    /// A layer of your own, `b=16,i=256,o=256,k=3,r=8,h=40,w=40` (optional: s stride, p padding,
    /// d dilation; default s=1, p=k/2, d=1); repeat for several.
    #[arg(long = "layer", value_name = "SPEC")]
    layers: Vec<String>,
    /// Only this mode (inference or training); both by default.
    #[arg(long, value_name = "MODE")]
    mode: Option<String>,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// A layer and its input shape, by name.
type Layer = (String, DrConvConfig, [usize; 4]);

/// `b=..,i=..,o=..,k=..,r=..,h=..,w=..[,s=..,p=..,d=..]`.
fn parse_layer(spec: &str) -> Result<Layer, CliError> {
    let mut v = std::collections::BTreeMap::new();
    for part in spec.split(',') {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| CliError(format!("--layer {spec:?}: {part:?} is not key=value")))?;
        let n: usize = value
            .trim()
            .parse()
            .map_err(|e| CliError(format!("--layer {spec:?}: {key}={value:?}: {e}")))?;
        v.insert(key.trim().to_string(), n);
    }
    let get = |k: &str| {
        v.get(k)
            .copied()
            .ok_or_else(|| CliError(format!("--layer {spec:?}: {k}= is missing")))
    };
    let k = get("k")?;
    let config = DrConvConfig::new(get("i")?, get("o")?, k, get("r")?)?
        .with_stride(v.get("s").copied().unwrap_or(1))?
        .with_padding(v.get("p").copied().unwrap_or(k / 2))?
        .with_dilation(v.get("d").copied().unwrap_or(1))?;
    let name = format!("layer {spec}");
    Ok((name, config, [get("b")?, get("i")?, get("h")?, get("w")?]))
}

fn layers(args: &Args) -> Result<Vec<Layer>, CliError> {
    let mut out = Vec::new();
    let picked: Vec<usize> = match (args.shapes.is_empty(), args.layers.is_empty()) {
        (true, true) => (1..=ALL_SHAPES.len()).collect(),
        _ => args.shapes.iter().map(|&n| n as usize).collect(),
    };
    for n in picked {
        let shape = &ALL_SHAPES[n - 1];
        let name = format!("{} {}", SHAPE_TAGS[n - 1], shape.name());
        out.push((name, shape.config()?, shape.input_shape()));
    }
    for spec in &args.layers {
        out.push(parse_layer(spec)?);
    }
    Ok(out)
}

fn modes(args: &Args) -> Result<Vec<Mode>, CliError> {
    Ok(match args.mode.as_deref() {
        None => vec![Mode::Inference, Mode::Training],
        Some("inference") => vec![Mode::Inference],
        Some("training") => vec![Mode::Training],
        Some(other) => {
            return Err(CliError(format!(
                "--mode {other:?}: expected inference or training"
            )))
        }
    })
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let forced = super::variant_overrides()?;
    let profile = match &args.profile {
        Some(name) => Some(GpuProfile::named(name).map_err(CliError)?),
        None => None,
    };
    let target = match &profile {
        Some(p) => p.target(forced),
        None => Target::of(&*pollster::block_on(super::context())?),
    };
    let mut report = Report {
        profile,
        plans: Vec::new(),
    };
    for (name, config, shape) in layers(&args)? {
        for &mode in &modes(&args)? {
            let layer = (name.as_str(), &config, &shape[..]);
            report
                .plans
                .push(plan_report(&target, profile.as_ref(), layer, mode)?);
        }
    }
    say(plan_table(&report))?;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .map_err(|e| CliError(format!("writing {}: {e}", path.display())))?;
    }
    Ok(ExitCode::SUCCESS)
}
