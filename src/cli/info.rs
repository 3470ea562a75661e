//! `drconv info`: every adapter wgpu finds (honouring `WGPU_BACKEND`), with the features and
//! the limits that bound the layer sizes this crate can run.

use std::process::ExitCode;

use drconv::internal::bench::{ShapeVariants, SHAPES};
use drconv::internal::gpu::context::{instance, AdapterSummary};
use drconv::internal::gpu::decide::{decide, Target, ASSUMED_COMPUTE_UNITS};
use drconv::internal::gpu::variants::AdapterTraits;
use drconv::{Mode, VariantOverrides, Variants};
use serde::Serialize;

use super::{say, CliError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object per adapter.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct KeyLimits {
    max_buffer_size: u64,
    max_storage_buffer_binding_size: u64,
    max_compute_workgroups_per_dimension: u32,
    max_compute_invocations_per_workgroup: u32,
    max_compute_workgroup_storage_size: u32,
}

#[derive(Debug, Serialize)]
struct AdapterReport {
    #[serde(flatten)]
    summary: AdapterSummary,
    features: Vec<&'static str>,
    /// Dispatch sizes read from GPU buffers (the fused correlation's grid, sized on the device).
    indirect_dispatch: bool,
    limits: KeyLimits,
    /// The shader variants a layer of each benchmark shape runs here (the `DRCONV_*` switches
    /// applied).
    variants: Vec<ShapeVariants>,
    /// Every per-shape decision of each benchmark shape's plans, inference then training (the
    /// per-region uniform bindings as the shape rule gives them; a plan's autotune may still
    /// turn them off).
    decisions: Vec<ShapeVariants>,
}

fn describe(adapter: &wgpu::Adapter, forced: &VariantOverrides) -> Result<AdapterReport, CliError> {
    let l = adapter.limits();
    let indirect = adapter
        .get_downlevel_capabilities()
        .flags
        .contains(wgpu::DownlevelFlags::INDIRECT_EXECUTION);
    let traits = AdapterTraits {
        cpu: adapter.get_info().device_type == wgpu::DeviceType::Cpu,
        indirect,
    };
    let target = Target {
        traits,
        limits: l.clone(),
        forced: *forced,
        merge_stages: true,
        compute_units: ASSUMED_COMPUTE_UNITS,
    };
    let (mut variants, mut decisions) = (Vec::new(), Vec::new());
    for shape in SHAPES {
        let config = shape.config()?;
        variants.push(ShapeVariants {
            shape: shape.name(),
            variants: Variants::choose(traits, &config, forced).to_string(),
        });
        let s = config.forward_shape(&shape.input_shape())?;
        for mode in [Mode::Inference, Mode::Training] {
            decisions.push(ShapeVariants {
                shape: shape.name(),
                variants: decide(&target, &config, &s, mode, true).to_string(),
            });
        }
    }
    Ok(AdapterReport {
        summary: AdapterSummary::from_info(&adapter.get_info()),
        features: adapter.features().iter_names().map(|(n, _)| n).collect(),
        indirect_dispatch: indirect,
        limits: KeyLimits {
            max_buffer_size: l.max_buffer_size,
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
            max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
            max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
        },
        variants,
        decisions,
    })
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let adapters = pollster::block_on(instance(None).enumerate_adapters(wgpu::Backends::all()));
    if adapters.is_empty() {
        return Err(CliError(format!(
            "wgpu found no adapter (WGPU_BACKEND={}); on Linux install Mesa's drivers: \
             apt-get install mesa-vulkan-drivers libvulkan1 (Vulkan) or libegl1 libegl-mesa0 \
             libgl1-mesa-dri (GL)",
            std::env::var("WGPU_BACKEND").unwrap_or_else(|_| "unset".into())
        )));
    }
    let forced = super::variant_overrides()?;
    for a in &adapters {
        let r = describe(a, &forced)?;
        if args.json {
            say(serde_json::to_string(&r)?)?;
            continue;
        }
        let (s, l) = (&r.summary, &r.limits);
        say(format!("{} ({}, {})", s.name, s.backend, s.device_type))?;
        say(format!("  driver: {} {}", s.driver, s.driver_info))?;
        for (name, v) in [
            ("max_buffer_size", l.max_buffer_size),
            (
                "max_storage_buffer_binding_size",
                l.max_storage_buffer_binding_size,
            ),
            (
                "max_compute_workgroups_per_dimension",
                l.max_compute_workgroups_per_dimension.into(),
            ),
            (
                "max_compute_invocations_per_workgroup",
                l.max_compute_invocations_per_workgroup.into(),
            ),
            (
                "max_compute_workgroup_storage_size",
                l.max_compute_workgroup_storage_size.into(),
            ),
        ] {
            say(format!("  {name}: {v}"))?;
        }
        say(format!("  features: {}", r.features.join(" ")))?;
        say(format!("  indirect dispatch: {}", r.indirect_dispatch))?;
        for v in &r.variants {
            say(format!("  variants at {}: {}", v.shape, v.variants))?;
        }
        for d in &r.decisions {
            say(format!("  plan at {}: {}", d.shape, d.variants))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
