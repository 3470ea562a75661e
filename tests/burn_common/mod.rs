//! Shared by the burn tests: the devices, host <-> burn tensors, comparisons.
#![allow(dead_code)]

pub mod golden;

use std::sync::OnceLock;

use burn::backend::wgpu::WgpuDevice;
use burn::tensor::{Device, Tensor, TensorData};

/// Forward tolerance, `atol + rtol * |want|`.
pub const FORWARD: (f64, f64) = (1e-5, 1e-4);
/// Gradient tolerance.
pub const GRADIENT: (f64, f64) = (1e-4, 1e-3);

/// burn's default wgpu device, registered with drconv (once per test binary).
pub fn wgpu() -> Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE
        .get_or_init(|| {
            drconv::burn::init_wgpu(&WgpuDevice::default())
                .expect("a wgpu adapter (lavapipe on CI)")
        })
        .clone()
}

/// The devices every check runs on: our kernels, and burn's CPU backend (burn's ops).
pub fn devices() -> Vec<(&'static str, Device)> {
    vec![("wgpu kernels", wgpu()), ("flex", Device::flex())]
}

pub fn tensor<const D: usize>(t: &drconv::Tensor, device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(t.data.clone(), t.shape.clone()), device)
}

pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// The largest `|got - want| - (atol + rtol |want|)` excess (<= 0 is within tolerance) and the
/// largest absolute error; NaN anywhere fails.
pub fn check(
    what: &str,
    got: &[f32],
    want: &[f32],
    (atol, rtol): (f64, f64),
) -> Result<f64, String> {
    if got.len() != want.len() {
        return Err(format!("{what}: {} values, want {}", got.len(), want.len()));
    }
    let mut worst = 0.0f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w as f64).abs();
        // NaN fails too: it is not within any tolerance.
        let within = err <= atol + rtol * (w as f64).abs();
        if !within {
            return Err(format!("{what}[{i}] = {g}, want {w} (error {err:.3e})"));
        }
        worst = worst.max(err);
    }
    Ok(worst)
}
