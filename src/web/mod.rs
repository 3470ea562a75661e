//! The browser build's JavaScript API (wasm-bindgen; compiled only for `wasm32`). The page in
//! `examples/web/` drives the same layer, trainer, shaders, golden comparison and demo image
//! helpers as the native crate through it: JavaScript only fetches bytes and draws pixels.
//!
//! Every call that touches the GPU is async (a `Promise` in JavaScript): the browser cannot block
//! on the device, so readbacks and completion waits resolve through its event loop. Errors reach
//! JavaScript as `Error`s carrying the [`crate::DrConvError`] message.

mod golden;
mod gpu;
mod js;
mod playground;

pub use golden::GoldenRun;
pub use gpu::WebGpu;
pub use playground::{Frame, Playground, TrainProgress};

use wasm_bindgen::prelude::*;

/// Installed when the module loads: a Rust panic (a bug) is printed to the console with its
/// message and location instead of the bare "unreachable executed" of wasm.
#[wasm_bindgen(start)]
pub fn start() {
    // The crate's and wgpu's warnings go to the browser console.
    if log::set_logger(&CONSOLE).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&JsValue::from_str(&format!("drconv panicked: {info}")));
    }));
}

/// `log` records to the browser console (warnings and errors as such, the rest as logs).
struct ConsoleLog;

static CONSOLE: ConsoleLog = ConsoleLog;

impl log::Log for ConsoleLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = JsValue::from_str(&format!("[{}] {}", record.target(), record.args()));
        match record.level() {
            log::Level::Error => web_sys::console::error_1(&text),
            log::Level::Warn => web_sys::console::warn_1(&text),
            _ => web_sys::console::log_1(&text),
        }
    }

    fn flush(&self) {}
}
