//! Measured, not guessed (what burn calls autotune): whether the fused correlation's per-region
//! uniform bindings pay on this adapter. On CPU adapters they halved one benchmark shape's fused
//! correlation on one host and made it 1.4x slower on another, under the same driver and
//! adapter name (PERF.md, Design): what decides is the host CPU's per-lane load cost against
//! lavapipe's cost per dispatch, which no adapter property tells. So the first inference plan of
//! a (configuration, input shape) that the shape rule gives per-region uniform bindings is timed
//! against the same plan without them, the faster one is kept, and the choice is recorded on the
//! context for every later plan of that key. Both plans
//! compute bitwise the same output (`tests/fused_tiling.rs`); only the time differs.

use crate::config::DrConvConfig;
use crate::error::Result;
use crate::gpu::context::GpuContext;
use crate::gpu::forward::ForwardPlan;
use crate::gpu::params::GpuParams;

/// Timed runs of each plan after its first (which pays the compile), alternating; the minimum
/// of each is compared (the host's noise only ever adds time).
#[cfg(not(target_family = "wasm"))]
const ROUNDS: usize = 2;

/// `plan` (an inference plan just built), or the same plan without the per-(sample, region)
/// per-region uniform bindings where that measured faster. Plans without them, and keys already measured or
/// forced (`VariantOverrides::uniform_kernel`), pass through untimed. In the browser, where
/// nothing may block on the GPU, the shape rule stands.
pub(crate) async fn per_region_uniform(
    ctx: &GpuContext,
    config: &DrConvConfig,
    params: &GpuParams,
    plan: ForwardPlan,
) -> Result<ForwardPlan> {
    if plan.decisions.per_region_uniform.is_none()
        || ctx
            .per_region_uniform_choice(config, &plan.input.shape)
            .is_some()
    {
        return Ok(plan);
    }
    measure(ctx, config, params, plan).await
}

#[cfg(target_family = "wasm")]
async fn measure(
    _ctx: &GpuContext,
    _config: &DrConvConfig,
    _params: &GpuParams,
    plan: ForwardPlan,
) -> Result<ForwardPlan> {
    Ok(plan)
}

#[cfg(not(target_family = "wasm"))]
async fn measure(
    ctx: &GpuContext,
    config: &DrConvConfig,
    params: &GpuParams,
    per_region: ForwardPlan,
) -> Result<ForwardPlan> {
    let shape = per_region.input.shape.clone();
    let built = ctx
        .scoped("building the forward plan", || {
            crate::gpu::plan::forward_without_per_region_uniform(ctx, config, params, &shape)
        })
        .await
        .and_then(|plan| plan);
    // A second plan that does not fit beside the first (a device near its memory limit) is no
    // reason to fail a forward the first can run: keep the per-region bindings untimed.
    let plain = match built {
        Ok(plan) => plan,
        Err(e) if ctx.is_lost() => return Err(e),
        Err(e) => {
            log::info!("drconv: kept the per-region uniform bindings untimed for {shape:?}: {e}");
            ctx.record_per_region_uniform(config, &shape, true);
            return Ok(per_region);
        }
    };
    // The layer's weights on a fixed N(0, 1) input: regions spread as a real input's do (an
    // all-zero input would put every pixel in region 0 and time a different dispatch mix).
    let x = crate::rng::Rng::new(0x5eed).normal_vec(crate::tensor::numel(&shape));
    ctx.write(&per_region.input, &x)?;
    ctx.write(&plain.input, &x)?;
    let mut best = [f64::INFINITY; 2];
    for round in 0..=ROUNDS {
        for (i, plan) in [&per_region, &plain].into_iter().enumerate() {
            let ms = run_ms(ctx, plan).await?;
            if round > 0 {
                best[i] = best[i].min(ms);
            }
        }
    }
    let on = best[0] <= best[1];
    log::info!(
        "drconv: fused forward of {shape:?} with per-region uniform bindings {:.2} ms, without \
         {:.2} ms: per-region uniform {}",
        best[0],
        best[1],
        if on { "on" } else { "off" }
    );
    ctx.record_per_region_uniform(config, &shape, on);
    Ok(if on { per_region } else { plain })
}

/// Wall milliseconds of one submission of `plan`'s program, waited for.
#[cfg(not(target_family = "wasm"))]
async fn run_ms(ctx: &GpuContext, plan: &ForwardPlan) -> Result<f64> {
    let mut encoder = ctx.encoder("drconv per-region uniform autotune");
    plan.program.encode(&mut encoder);
    let t0 = std::time::Instant::now();
    ctx.submit(encoder).await?;
    ctx.poll_wait()?;
    Ok(t0.elapsed().as_secs_f64() * 1e3)
}
