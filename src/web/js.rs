//! Helpers between Rust and the page: errors as JavaScript `Error`s, the page's clock, GPU
//! completion, JSON reports.

use wasm_bindgen::prelude::*;

use crate::error::{DrConvError, Result as DrResult};
use crate::gpu::context::GpuContext;

/// The crate's error as a JavaScript `Error` with the same message.
pub(crate) fn js_err(e: DrConvError) -> JsError {
    JsError::new(&e.to_string())
}

/// Milliseconds from the page's high-resolution clock (`std::time::Instant` panics on wasm).
pub(crate) fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map(|p| p.now())
        .unwrap_or_else(js_sys::Date::now)
}

/// Resolves once the GPU has finished everything submitted so far (WebGPU's
/// `onSubmittedWorkDone`), so wall-clock timings include the GPU work and not just its recording.
pub(crate) async fn work_done(ctx: &GpuContext) -> DrResult<()> {
    let (tx, rx) = futures_channel::oneshot::channel();
    ctx.queue.on_submitted_work_done(move || {
        let _ = tx.send(());
    });
    ctx.poll_wait()?;
    rx.await
        .map_err(|_| DrConvError::DeviceLost("the GPU never reported the work done".into()))?;
    ctx.check("waiting for the GPU")
}

/// JSON of a serialisable report (the page parses it with `JSON.parse`).
pub(crate) fn to_json(value: &impl serde::Serialize) -> Result<String, JsError> {
    serde_json::to_string(value).map_err(|e| JsError::new(&format!("cannot encode a report: {e}")))
}
