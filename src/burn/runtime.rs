//! Which wgpu devices of burn's carry a drconv context, and each module's layer per context.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use burn::backend::wgpu::{WgpuDevice, WgpuSetup};
use burn::backend::{CubeDevice, DispatchDevice};
use burn::tensor::Device;

use crate::config::DrConvConfig;
use crate::error::{DrConvError, Result};
use crate::gpu::GpuContext;
use crate::params::DrConvParams;

/// Which implementation a forward runs (see the [module docs](super)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// drconv's WGSL kernels on burn's wgpu device and queue.
    Kernels,
    /// The reference algorithm composed from burn's tensor ops.
    BurnOps,
}

/// A wgpu device of burn's that drconv shares: its context, and the path layers take there.
struct SharedDevice {
    device: WgpuDevice,
    ctx: Arc<GpuContext>,
    path: Path,
}

type Shared = Vec<SharedDevice>;

static SHARED: OnceLock<Mutex<Shared>> = OnceLock::new();

fn shared() -> MutexGuard<'static, Shared> {
    SHARED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Records `setup` (burn's device, adapter and queue) as the context of `device`.
fn adopt(device: WgpuDevice, setup: &WgpuSetup) -> Result<Device> {
    let ctx = GpuContext::from_wgpu(&setup.adapter, &setup.device, &setup.queue)?;
    // In the browser popping an error scope is a promise that burn's executor cannot wait for:
    // our work there leaves its errors to the next call (or to `settle`).
    ctx.set_deferred_errors(cfg!(target_family = "wasm"));
    let mut all = shared();
    all.retain(|d| d.device != device);
    all.push(SharedDevice {
        device: device.clone(),
        ctx,
        path: Path::Kernels,
    });
    Ok(Device::new(DispatchDevice::Cube(CubeDevice::Wgpu(device))))
}

fn init_error(device: &WgpuDevice, e: impl std::fmt::Display) -> DrConvError {
    DrConvError::NoAdapter(format!(
        "initialising burn's wgpu device {device:?} for drconv failed: {e} (call \
         drconv::burn::init_wgpu before anything else uses that device, once per device)"
    ))
}

/// Brings up burn's wgpu `device` (its runtime, with burn's default options) and shares it with
/// drconv: returns the burn [`Device`] on which [`super::DrConv2d`] runs drconv's kernels (use
/// `.autodiff()` on it to train). Call it once per device, before burn first uses the device.
#[cfg(not(target_family = "wasm"))]
pub fn init_wgpu(device: &WgpuDevice) -> Result<Device> {
    use burn::backend::wgpu::{graphics::AutoGraphicsApi, try_init_setup, RuntimeOptions};
    let setup = try_init_setup::<AutoGraphicsApi>(device, RuntimeOptions::default())
        .map_err(|e| init_error(device, e))?;
    adopt(device.clone(), &setup)
}

/// [`init_wgpu`] without blocking (the browser).
pub async fn init_wgpu_async(device: &WgpuDevice) -> Result<Device> {
    use burn::backend::wgpu::{graphics::AutoGraphicsApi, try_init_setup_async, RuntimeOptions};
    let setup = try_init_setup_async::<AutoGraphicsApi>(device, RuntimeOptions::default())
        .await
        .map_err(|e| init_error(device, e))?;
    adopt(device.clone(), &setup)
}

/// Registers an application's own wgpu setup with burn (`burn::backend::wgpu::init_device`) and
/// with drconv, so that burn, drconv and the application share one device and queue.
pub fn register_setup(setup: WgpuSetup) -> Result<Device> {
    use burn::backend::wgpu::{try_init_device, RuntimeOptions};
    let device = try_init_device(setup.clone(), RuntimeOptions::default()).map_err(|e| {
        DrConvError::NoAdapter(format!("registering the wgpu setup with burn failed: {e}"))
    })?;
    adopt(device, &setup)
}

/// drconv's context on burn's `device`, if that is a wgpu device drconv was given.
pub fn context(device: &Device) -> Option<Arc<GpuContext>> {
    wgpu_device(device).and_then(|d| wgpu_context(&d))
}

/// burn's wgpu device behind `device`, if it is one.
fn wgpu_device(device: &Device) -> Option<WgpuDevice> {
    match device.clone().inner().as_dispatch() {
        DispatchDevice::Cube(CubeDevice::Wgpu(d)) => Some(d.clone()),
        _ => None,
    }
}

pub(crate) fn wgpu_context(device: &WgpuDevice) -> Option<Arc<GpuContext>> {
    shared()
        .iter()
        .find(|d| d.device == *device)
        .map(|d| d.ctx.clone())
}

/// The path [`super::DrConv2d`] takes for f32 on `device`: [`Path::Kernels`] on a device
/// registered with drconv (unless [`set_path`] said otherwise), in the browser too;
/// [`Path::BurnOps`] elsewhere.
pub fn path(device: &Device) -> Path {
    let Some(wgpu) = wgpu_device(device) else {
        return Path::BurnOps;
    };
    let registered = shared().iter().find(|d| d.device == wgpu).map(|d| d.path);
    registered.unwrap_or(Path::BurnOps)
}

/// Waits until every error of drconv's work so far on `device` is known, and returns the first
/// (`Ok` on a device drconv does not run on). In the browser an error of our kernels inside
/// burn's executor surfaces one call late (popping an error scope is a promise there); this is
/// the explicit check, for after reading a model's output back (`into_data_async`), which
/// makes burn run what it queued. Natively errors are reported by the call itself and this
/// returns at once.
pub async fn settle(device: &Device) -> Result<()> {
    match context(device) {
        Some(ctx) => ctx.settle("drconv::burn::settle").await,
        None => Ok(()),
    }
}

/// Sets the path layers take on a device registered with drconv: [`Path::BurnOps`] runs burn's
/// ops there too (to compare both on one adapter and queue, or to rule our kernels out),
/// [`Path::Kernels`] goes back. An error for a device drconv was not given.
pub fn set_path(device: &Device, path: Path) -> Result<()> {
    let wgpu = wgpu_device(device);
    let mut all = shared();
    let entry = all.iter_mut().find(|d| Some(&d.device) == wgpu.as_ref());
    match entry {
        Some(d) => {
            d.path = path;
            Ok(())
        }
        None => Err(DrConvError::Config(format!(
            "set_path: {device:?} is not a wgpu device registered with drconv (init_wgpu, \
             init_wgpu_async or register_setup)"
        ))),
    }
}

/// Numbers training forwards, so that a backward knows whether the plan still holds its
/// forward's tensors.
static TICKETS: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_ticket() -> u64 {
    TICKETS.fetch_add(1, Ordering::Relaxed)
}

/// One module's layer on one context, and which training forward each of its training plans
/// (one per input shape) last ran.
pub(crate) struct Slot {
    pub layer: crate::DrConv2d,
    last_training: Vec<(Vec<usize>, u64)>,
}

impl Slot {
    /// The training plan of `shape` now holds the tensors of forward `ticket`.
    pub fn trained(&mut self, shape: Vec<usize>, ticket: u64) {
        self.last_training.retain(|(s, _)| *s != shape);
        self.last_training.push((shape, ticket));
    }

    /// Whether the training plan of `shape` still holds the tensors of forward `ticket`.
    pub fn holds(&self, shape: &[usize], ticket: u64) -> bool {
        self.last_training
            .iter()
            .any(|(s, t)| s == shape && *t == ticket)
    }
}

/// A module's drconv state: its configuration, and its layer on every context it ran on.
/// Clones of a module (burn clones modules freely) share it; each call copies the calling
/// module's parameters into the layer first, so sharing never mixes weights.
#[derive(Clone)]
pub struct Runtime {
    config: DrConvConfig,
    slots: Arc<Mutex<Vec<Slot>>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    pub(crate) fn new(config: DrConvConfig) -> Self {
        Runtime {
            config,
            slots: Default::default(),
        }
    }

    pub(crate) fn config(&self) -> &DrConvConfig {
        &self.config
    }

    /// Drops this module's layer on `ctx` (its plans), to be made anew on the next call.
    pub(crate) fn forget(&self, ctx: &GpuContext) {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slots.retain(|s| s.layer.context().id() != ctx.id());
    }

    /// Runs `f` on this module's layer on `ctx` (made on first use).
    pub(crate) fn with_slot<T>(
        &self,
        ctx: &Arc<GpuContext>,
        f: impl FnOnce(&mut Slot) -> Result<T>,
    ) -> Result<T> {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let pos = match slots
            .iter()
            .position(|s| s.layer.context().id() == ctx.id())
        {
            Some(pos) => pos,
            None => {
                // Placeholder values: every call copies the module's parameters in first.
                let params = DrConvParams::init(self.config, 0)?;
                slots.push(Slot {
                    layer: crate::DrConv2d::new(ctx.clone(), &params)?,
                    last_training: Vec::new(),
                });
                slots.len() - 1
            }
        };
        f(&mut slots[pos])
    }
}
