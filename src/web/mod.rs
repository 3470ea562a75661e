//! The browser build's JavaScript API (wasm-bindgen; compiled only for `wasm32`). The page in
//! `examples/web/` drives the same layer, trainer, shaders, golden comparison and demo image
//! helpers as the native crate through it: JavaScript only fetches bytes and draws pixels.
//!
//! Every call that touches the GPU is async (a `Promise` in JavaScript): the browser cannot block
//! on the device, so readbacks and completion waits resolve through its event loop. Errors reach
//! JavaScript as `Error`s carrying the [`crate::DrConvError`] message.

mod golden;
mod gpu;
mod playground;

pub use golden::GoldenRun;
pub use gpu::WebGpu;
pub use playground::{Frame, Playground, TrainProgress};

use wasm_bindgen::prelude::*;

use crate::error::DrConvError;
use crate::gpu::GpuContext;

/// Installed when the module loads: a Rust panic (a bug) is printed to the console with its
/// message and location instead of the bare "unreachable executed" of wasm.
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&JsValue::from_str(&format!("drconv panicked: {info}")));
    }));
}

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
pub(crate) async fn work_done(ctx: &GpuContext) -> crate::Result<()> {
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
