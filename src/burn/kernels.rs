//! [`DrConvOps`] for burn's cubecl backend: our WGSL plans on the wgpu device under burn's
//! tensors, reading and writing burn's buffers in place.
//!
//! Each call: make the inputs contiguous, allocate the outputs through burn, take the wgpu
//! buffer (and offset) of every tensor from cubecl, flush cubecl's pending work to the queue,
//! then record the parameter copies and the plan into one encoder and submit it on the same
//! queue (so it runs after everything burn submitted before, and before anything after). The
//! buffers stay claimed until the GPU has run our submission.

use std::sync::Arc;

use burn::backend::{DType, TensorMetadata};
use burn::tensor::Shape;
use burn_cubecl::cubecl::wgpu::{AutoCompiler, WgpuServer};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{CubeBackend, CubeDevice};

use super::ops::{DrConvOps, DrConvTensors, KernelCall};
use super::runtime::wgpu_context;
use crate::config::Mode;
use crate::error::{DrConvError, Result};
use crate::gpu::deferred::without_waiting;
use crate::gpu::{GpuContext, GpuTensor};
use crate::params::ParamId;

/// Every cubecl allocation a submission of ours reads or writes, held until it has run.
struct Claims {
    ctx: Arc<GpuContext>,
    held: Vec<Box<dyn Send>>,
}

impl Claims {
    fn new(ctx: Arc<GpuContext>) -> Self {
        Claims {
            ctx,
            held: Vec::new(),
        }
    }

    /// Our view of burn's (contiguous, f32) tensor `t`, its allocation claimed.
    fn view(&mut self, t: &CubeTensor, what: &str) -> Result<GpuTensor> {
        if t.dtype != DType::F32 {
            return Err(DrConvError::Config(format!(
                "{what} is {:?}; drconv's kernels take f32 tensors",
                t.dtype
            )));
        }
        let managed = t
            .client
            .get_resource::<WgpuServer<AutoCompiler>>(t.handle.clone())
            .map_err(|e| {
                DrConvError::Config(format!("burn's buffer of {what} is not reachable: {e}"))
            })?;
        let resource = managed.resource();
        let view = GpuTensor::from_buffer(
            &self.ctx,
            &resource.buffer,
            resource.offset,
            t.shape().as_slice(),
        )?;
        self.held.push(Box::new(managed));
        Ok(view)
    }

    /// Submits `encoder`, then releases the claims once the GPU has run it. Where the context
    /// defers its errors (`GpuContext::set_deferred_errors`: burn's WebGPU devices), nothing
    /// here waits: an error of this submission comes back from the next call.
    fn submit(
        self,
        client_flush: impl FnOnce() -> Result<()>,
        encoder: wgpu::CommandEncoder,
    ) -> Result<()> {
        client_flush()?;
        without_waiting(
            "drconv in burn",
            self.ctx.submit_deferred("drconv in burn", encoder),
        )??;
        let held = self.held;
        self.ctx.queue().on_submitted_work_done(move || drop(held));
        Ok(())
    }
}

/// drconv's context on the device of `t`.
fn context_of(t: &CubeTensor) -> Result<Arc<GpuContext>> {
    match &t.device {
        CubeDevice::Wgpu(device) => wgpu_context(device).ok_or_else(|| {
            DrConvError::NoAdapter(format!(
                "burn's wgpu device {device:?} is not registered with drconv: create it with \
                 drconv::burn::init_wgpu (or register_setup) before its first use"
            ))
        }),
        other => Err(DrConvError::NoAdapter(format!(
            "drconv's kernels run on burn's wgpu devices, not on {other:?}"
        ))),
    }
}

fn flush(t: &CubeTensor) -> impl FnOnce() -> Result<()> + '_ {
    move || {
        t.client.flush().map_err(|e| {
            DrConvError::DeviceLost(format!("flushing burn's pending work failed: {e}"))
        })
    }
}

fn fail<T>(op: &str, r: Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("drconv {op} on burn's wgpu device failed: {e}"))
}

fn empty_like(t: &CubeTensor, shape: &[usize]) -> CubeTensor {
    empty_device_contiguous_dtype(
        t.client.clone(),
        t.device.clone(),
        Shape::from(shape.to_vec()),
        t.dtype,
    )
}

/// Our views of `t`: x's, and the parameters' in state_dict order, their allocations claimed.
/// `prefix` goes before each tensor's name in errors.
fn views(
    claims: &mut Claims,
    t: &DrConvTensors<CubeBackend>,
    prefix: &str,
) -> Result<(GpuTensor, [GpuTensor; 6])> {
    let names = std::iter::once("x").chain(ParamId::ALL.map(ParamId::name));
    let mut views = Vec::with_capacity(7);
    for (t, name) in t.clone().into_array().iter().zip(names) {
        views.push(claims.view(t, &format!("{prefix}{name}"))?);
    }
    let x = views.remove(0);
    Ok((x, views.try_into().expect("six parameters")))
}

fn forward(t: DrConvTensors<CubeBackend>, call: &KernelCall) -> Result<CubeTensor> {
    let ctx = context_of(&t.x)?;
    let t = t.map::<CubeBackend>(into_contiguous);
    let config = call.runtime.config();
    let shape = t.x.shape().to_vec();
    let y = empty_like(&t.x, &config.forward_shape(&shape)?.output(config));
    let mut claims = Claims::new(ctx.clone());
    let (xv, pv) = views(&mut claims, &t, "")?;
    let yv = claims.view(&y, "the output")?;
    call.runtime.with_slot(&ctx, |slot| {
        let mut encoder = ctx.encoder("drconv forward in burn");
        slot.layer.encode_load_params(&mut encoder, &pv)?;
        without_waiting(
            "drconv forward in burn",
            slot.layer
                .encode_forward_into(&mut encoder, &xv, &yv, call.mode),
        )??;
        claims.submit(flush(&t.x), encoder)?;
        if call.mode == Mode::Training {
            slot.trained(shape, call.ticket);
        }
        Ok(())
    })?;
    Ok(y)
}

fn backward(
    t: DrConvTensors<CubeBackend>,
    grad: CubeTensor,
    call: &KernelCall,
) -> Result<DrConvTensors<CubeBackend>> {
    let ctx = context_of(&t.x)?;
    let (t, grad) = (t.map::<CubeBackend>(into_contiguous), into_contiguous(grad));
    let shape = t.x.shape().to_vec();
    let g = t.clone().map(|t| empty_like(&t, t.shape().as_slice()));
    let mut claims = Claims::new(ctx.clone());
    let (xv, pv) = views(&mut claims, &t, "")?;
    let (gxv, gpv) = views(&mut claims, &g, "dL/d")?;
    let gv = claims.view(&grad, "the output gradient")?;
    call.runtime.with_slot(&ctx, |slot| {
        let mut encoder = ctx.encoder("drconv backward in burn");
        slot.layer.encode_load_params(&mut encoder, &pv)?;
        // The plan holds the tensors of its last training forward: recompute them unless that
        // was this call's forward, of this very input.
        if !slot.holds(&shape, call.ticket) || !slot.layer.trained_on(&xv) {
            let out = without_waiting(
                "drconv backward in burn",
                slot.layer.encode_forward(&mut encoder, &xv, Mode::Training),
            )??;
            drop(out);
            slot.trained(shape.clone(), call.ticket);
        }
        let grads = without_waiting(
            "drconv backward in burn",
            slot.layer
                .encode_backward_into(&mut encoder, &xv, &gv, &gxv),
        )??;
        for (src, dst) in grads.params.iter().zip(&gpv) {
            crate::layer::copy_view(&mut encoder, src, dst);
        }
        claims.submit(flush(&t.x), encoder)
    })?;
    Ok(g)
}

impl DrConvOps for CubeBackend {
    fn drconv_forward(tensors: DrConvTensors<Self>, call: KernelCall) -> CubeTensor {
        fail("forward", forward(tensors, &call))
    }

    fn drconv_backward(
        tensors: DrConvTensors<Self>,
        grad: CubeTensor,
        call: KernelCall,
    ) -> DrConvTensors<Self> {
        fail("backward", backward(tensors, grad, &call))
    }
}
