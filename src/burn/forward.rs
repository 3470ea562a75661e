//! One forward for both modules ([`super::DrConv2d`], whose weights are its parameters, and
//! [`super::DrConv2dFn`], whose weights come with each call): the weights checked against the
//! layer and the input, then our kernels or burn's ops by device.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::{DType, Dispatch};
use burn::tensor::{Device, Tensor};

use super::ops::{DrConvOps, DrConvTensors, KernelCall};
use super::reference::{self, Weights};
use super::runtime::{self, context, Path, Runtime};
use crate::config::{DrConvConfig, Mode};
use crate::error::{DrConvError, Result};
use crate::gpu::deferred::without_waiting;

static WARNED: AtomicBool = AtomicBool::new(false);

/// The output of the layer `runtime` on `x` with weights `w`: our kernels for f32 on a device
/// registered with drconv, burn's ops elsewhere.
pub(crate) fn run(runtime: &Runtime, x: Tensor<4>, w: Weights) -> Result<Tensor<4>> {
    checked(runtime.config(), &x, &w)?;
    let device = x.device();
    match runtime::path(&device) {
        Path::Kernels if x.dtype() == DType::F32 => kernels(runtime, x, w),
        _ => {
            note_burn_ops(&device);
            Ok(reference::forward(runtime.config(), x, &w))
        }
    }
}

/// `x`'s shape against the configuration, every weight's shape, and one float dtype for all
/// (burn's ops would panic on a mix).
pub(crate) fn checked(config: &DrConvConfig, x: &Tensor<4>, w: &Weights) -> Result<()> {
    config.forward_shape(&x.dims())?;
    let dtype = x.dtype();
    if !dtype.is_float() {
        return Err(DrConvError::Shape(format!(
            "x is {dtype:?}; DrConv2d takes unquantized float tensors (f32, f16, ...)"
        )));
    }
    check_shapes(config, w)?;
    for p in w.infos() {
        if p.dtype != dtype {
            return Err(DrConvError::Weights(format!(
                "{} is {:?} but x is {dtype:?}: the input and the parameters must share one \
                 float dtype (cast the input, or the module's parameters)",
                p.id.name(),
                p.dtype
            )));
        }
    }
    Ok(())
}

/// Every weight's shape against the configuration's.
pub(crate) fn check_shapes(config: &DrConvConfig, w: &Weights) -> Result<()> {
    for p in w.infos() {
        let want = config.param_shape(p.id);
        if p.dims != want {
            return Err(DrConvError::Weights(format!(
                "{} has shape {:?} but the layer {config:?} needs {want:?}",
                p.id.name(),
                p.dims
            )));
        }
    }
    Ok(())
}

/// Our kernels on burn's wgpu device: the plan built now (its errors, the device's limits, come
/// back here rather than from inside burn's executor), then the op handed to burn.
fn kernels(runtime: &Runtime, x: Tensor<4>, w: Weights) -> Result<Tensor<4>> {
    let ctx = context(&x.device()).expect("the path said kernels");
    // An error of earlier work left pending (deferred errors: the browser) comes back here,
    // not from inside burn's executor; the plans may hold what failed, so they are rebuilt.
    let check = || {
        let r = ctx.check("DrConv2d::try_forward");
        if r.is_err() {
            runtime.forget(&ctx);
        }
        r
    };
    check()?;
    let mode = if x.is_tracked() || w.infos().iter().any(|p| p.tracked) {
        Mode::Training
    } else {
        Mode::Inference
    };
    let shape = x.dims();
    runtime.with_slot(&ctx, |slot| {
        without_waiting("building the plan", slot.layer.prepare(&shape, mode))?
    })?;
    // Errors of building the plan, where already known (natively always).
    check()?;
    let call = KernelCall {
        runtime: runtime.clone(),
        mode,
        ticket: 0,
    };
    let tensors = DrConvTensors {
        x: x.into_dispatch(),
        w1: w.w1.into_dispatch(),
        b1: w.b1.into_dispatch(),
        w3: w.w3.into_dispatch(),
        b3: w.b3.into_dispatch(),
        gw: w.gw.into_dispatch(),
        gb: w.gb.into_dispatch(),
    };
    let y = <Dispatch as DrConvOps>::drconv_forward(tensors, call);
    Ok(Tensor::from_dispatch(y))
}

/// A wgpu device that was not registered runs burn's ops: say so once.
fn note_burn_ops(device: &Device) {
    if format!("{device:?}").contains("Wgpu")
        && context(device).is_none()
        && !WARNED.swap(true, Ordering::Relaxed)
    {
        log::warn!(
            "drconv::burn: {device:?} is a wgpu device not registered with drconv, so \
             DrConv2d runs burn's ops there (many times slower); create it with \
             drconv::burn::init_wgpu to run drconv's kernels"
        );
    }
}
