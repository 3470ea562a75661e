//! Golden cases in the browser: the page fetches a case's files, this runs the training forward,
//! the fused inference forward and the backward on WebGPU (every output poisoned with NaN first)
//! and compares with [`compare_case`], exactly as `tests/golden_gpu*.rs` do natively.

use std::collections::HashMap;

use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::config::Mode;
use crate::error::DrConvError;
use crate::golden::GoldenCase;
use crate::gpu::GpuContext;
use crate::layer::DrConv2d;
use crate::tensor::compare;
use crate::verify::{compare_case, CaseReport, FORWARD_TOL};
use crate::web::gpu::WebGpu;
use crate::web::js::{js_err, now_ms, to_json};

/// One case's verdict on this device.
#[derive(Debug, Clone, Serialize)]
pub struct GoldenRun {
    pub case: String,
    /// Every check passed: training forward, gradients, fused output and region map.
    pub ok: bool,
    /// Training-mode forward (every intermediate) and the backward, tensor by tensor.
    pub report: CaseReport,
    /// The fused inference forward's output against `output.bin`.
    pub fused_output_max_abs_err: f64,
    pub fused_output_ok: bool,
    /// Pixels whose fused-path region differs from `inter.region_index.bin` (must be 0).
    pub fused_region_mismatches: usize,
    /// Whether the case has `grad_output.bin`, i.e. whether gradients were checked.
    pub has_backward: bool,
    /// Wall time of the three runs, readbacks included (first runs: pipelines compile here).
    pub ms: f64,
}

#[wasm_bindgen]
impl WebGpu {
    /// Runs the golden case whose files are in `files` (file name → `Uint8Array`: `case.json`
    /// and every `.bin` its manifest lists) and returns the [`GoldenRun`] as JSON.
    pub async fn run_golden_case(
        &self,
        name: String,
        files: js_sys::Map,
    ) -> Result<String, JsError> {
        let mut bytes: HashMap<String, Vec<u8>> = HashMap::new();
        files.for_each(&mut |value, key| {
            if let Some(k) = key.as_string() {
                bytes.insert(k, js_sys::Uint8Array::new(&value).to_vec());
            }
        });
        let case = GoldenCase::load_with(&name, |file| {
            bytes.remove(file).ok_or_else(|| {
                DrConvError::Case(format!("{name}/{file} was not passed to run_golden_case"))
            })
        })
        .map_err(js_err)?;
        let run = run_case(&self.ctx, &case).await.map_err(js_err)?;
        to_json(&run)
    }
}

async fn run_case(ctx: &std::sync::Arc<GpuContext>, case: &GoldenCase) -> crate::Result<GoldenRun> {
    let start = now_ms();
    let mut layer = DrConv2d::new(ctx.clone(), &case.params)?;
    let x = layer.upload(&case.x)?;
    layer.plan(&x, Mode::Training).await?.poison(ctx);
    let trace = layer.forward_trace(&x, Mode::Training).await?;

    layer.plan(&x, Mode::Inference).await?.poison(ctx);
    let fused = layer.forward_trace(&x, Mode::Inference).await?;
    let gold = case
        .tensor("output")
        .ok_or_else(|| DrConvError::Case(format!("{}: no output.bin", case.name)))?;
    let (fused_err, fused_ok) =
        compare(&fused.output.data, &gold.data, FORWARD_TOL.0, FORWARD_TOL.1);
    let fused_region_mismatches = match &case.region_index {
        Some(r) => {
            r.iter()
                .zip(&fused.region_index)
                .filter(|(a, b)| a != b)
                .count()
                + r.len().abs_diff(fused.region_index.len())
        }
        None => 0,
    };

    // The backward reads what the training forward above saved (its plan is untouched by the
    // inference forward, which has its own buffers).
    let grads = match &case.grad_output {
        Some(gy) => {
            let gy = ctx.upload("grad_output", gy)?;
            let plan = layer.backward_plan(&x).await?;
            plan.materialise_corr(ctx, &case.config)?;
            plan.poison(ctx);
            Some(layer.backward_trace(&x, &gy).await?)
        }
        None => None,
    };
    let report = compare_case(case, &trace, grads.as_ref());
    Ok(GoldenRun {
        case: case.name.clone(),
        ok: report.ok && fused_ok && fused_region_mismatches == 0,
        report,
        fused_output_max_abs_err: fused_err,
        fused_output_ok: fused_ok,
        fused_region_mismatches,
        has_backward: grads.is_some(),
        ms: now_ms() - start,
    })
}
