//! `WebGpu`: the browser's WebGPU adapter and device, wrapped in the crate's [`GpuContext`].

use std::sync::Arc;

use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::error::DrConvError;
use crate::gpu::context::{instance, AdapterSummary};
use crate::gpu::variants::{Correlation, VariantOverrides};
use crate::gpu::GpuContext;
use crate::web::js::{js_err, to_json};

/// One WebGPU device for the page; layers, golden runs and trainers share it.
#[wasm_bindgen]
pub struct WebGpu {
    pub(crate) ctx: Arc<GpuContext>,
}

/// What the page shows about the device.
#[derive(Serialize)]
struct AdapterReport {
    #[serde(flatten)]
    summary: AdapterSummary,
    max_storage_buffer_binding_size: u64,
    max_compute_workgroups_per_dimension: u32,
    timestamp_query: bool,
}

#[wasm_bindgen]
impl WebGpu {
    /// Requests the browser's WebGPU adapter (high performance preferred) and a device with the
    /// adapter's own limits. Fails with a message saying so when the browser has no WebGPU.
    pub async fn connect() -> Result<WebGpu, JsError> {
        Self::connect_with(VariantOverrides::default()).await
    }

    /// [`WebGpu::connect`] running the GPU family of shaders whatever the adapter (the GEMM
    /// correlation, its K slices, the split reductions): the browser test checks it on
    /// Chromium's software adapter, which would otherwise run the CPU family.
    pub async fn connect_gpu_family() -> Result<WebGpu, JsError> {
        let v = VariantOverrides {
            correlation: Some(Correlation::Gemm),
            ..VariantOverrides::default()
        };
        Self::connect_with(v).await
    }

    async fn connect_with(variants: VariantOverrides) -> Result<WebGpu, JsError> {
        let adapter = instance(Some(wgpu::Backends::BROWSER_WEBGPU))
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                js_err(DrConvError::NoAdapter(format!(
                    "{e}: this browser offers no WebGPU adapter (navigator.gpu missing, WebGPU \
                     disabled, or no usable GPU)"
                )))
            })?;
        let ctx = GpuContext::from_adapter_with(adapter, None, variants)
            .await
            .map_err(js_err)?;
        Ok(WebGpu { ctx })
    }

    /// JSON: the adapter's name, backend, device type and driver, plus the limits that bound the
    /// layer sizes.
    pub fn adapter(&self) -> Result<String, JsError> {
        to_json(&AdapterReport {
            summary: self.ctx.summary(),
            max_storage_buffer_binding_size: self.ctx.limits.max_storage_buffer_binding_size,
            max_compute_workgroups_per_dimension: self
                .ctx
                .limits
                .max_compute_workgroups_per_dimension,
            timestamp_query: self
                .ctx
                .features()
                .contains(wgpu::Features::TIMESTAMP_QUERY),
        })
    }
}
