//! The GPU context: instance, adapter, device, queue, the pipeline cache, and error capture.
//!
//! wgpu's default uncaptured-error handler panics; we record errors instead and turn them into
//! `DrConvError`s at the next checkpoint, and we track device loss so a dead device gives an
//! error rather than a hang.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use crate::config::DrConvConfig;
use crate::error::{DrConvError, Result};
use crate::gpu::pipelines::PipelineCache;
use crate::gpu::variants::{AdapterTraits, VariantOverrides, Variants};

/// How to pick and configure the device.
#[derive(Debug, Clone, Default)]
pub struct ContextOptions {
    /// Backends to consider; `None` reads `WGPU_BACKEND` (vulkan, gl, metal, dx12, webgpu), else all.
    pub backends: Option<wgpu::Backends>,
    /// Limits to request. `None` asks for everything the adapter offers, so large layers fit.
    /// Tests pass deliberately small limits here to force the planners to split work.
    pub limits: Option<wgpu::Limits>,
    /// Prefer a low-power adapter (the default prefers high performance).
    pub low_power: bool,
    /// Shader variants to force (tests, A/B runs); the default lets the adapter decide
    /// (`GpuContext::variants`).
    pub variants: VariantOverrides,
}

/// A short description of the adapter in use.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
}

impl AdapterSummary {
    pub fn from_info(info: &wgpu::AdapterInfo) -> Self {
        AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
        }
    }
}

/// Shared state the wgpu callbacks write into.
#[derive(Default)]
struct ErrorSink {
    errors: Vec<String>,
    lost: Option<String>,
}

/// One device and everything compiled for it. Share it between layers with `Arc`.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: wgpu::Adapter,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// Whether dispatch sizes can come from a GPU buffer (`DownlevelFlags::INDIRECT_EXECUTION`:
    /// every backend but the oldest GL ES).
    pub indirect: bool,
    /// The variant choices forced for every layer on this context.
    overrides: VariantOverrides,
    pipelines: PipelineCache,
    sink: Arc<Mutex<ErrorSink>>,
    /// Test aid: guard words appended to every tensor `empty` allocates (see
    /// [`GpuContext::set_guard`]).
    pub(crate) guard: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.info.name)
            .field("backend", &self.info.backend)
            .finish()
    }
}

/// The instance descriptor: wgpu's defaults from its own `WGPU_*` variables (`WGPU_BACKEND`,
/// like wgpu's own tools), `backends` replacing its backends where given.
fn instance_descriptor(backends: Option<wgpu::Backends>) -> wgpu::InstanceDescriptor {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    if let Some(b) = backends {
        desc.backends = b;
    }
    desc
}

/// The instance, honouring `WGPU_BACKEND` like wgpu's own tools.
pub fn instance(backends: Option<wgpu::Backends>) -> wgpu::Instance {
    wgpu::Instance::new(instance_descriptor(backends))
}

impl GpuContext {
    /// The default adapter (`WGPU_BACKEND` respected) with its full limits.
    pub async fn new() -> Result<Arc<Self>> {
        Self::with_options(ContextOptions::default()).await
    }

    pub async fn with_options(opts: ContextOptions) -> Result<Arc<Self>> {
        let desc = instance_descriptor(opts.backends);
        let backends = format!("{:?}", desc.backends);
        let instance = wgpu::Instance::new(desc);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: if opts.low_power {
                    wgpu::PowerPreference::LowPower
                } else {
                    wgpu::PowerPreference::HighPerformance
                },
                force_fallback_adapter: false,
                compatible_surface: None,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                let hint = if backends.to_lowercase().contains("gl") {
                    "Mesa's llvmpipe through EGL: apt-get install libegl1 libegl-mesa0 \
                     libgl1-mesa-dri"
                } else {
                    "a Vulkan driver such as Mesa's lavapipe: apt-get install \
                     mesa-vulkan-drivers libvulkan1 (or scripts/setup.sh)"
                };
                DrConvError::NoAdapter(format!(
                    "{e} (backends: {backends}; on Linux install {hint})"
                ))
            })?;
        Self::build(adapter, opts.limits, opts.variants).await
    }

    /// Build a context on a given adapter. `limits` must not exceed the adapter's.
    // wgpu's web types are not Send/Sync, but wasm is single-threaded and native callers need Arc.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub async fn from_adapter(
        adapter: wgpu::Adapter,
        limits: Option<wgpu::Limits>,
    ) -> Result<Arc<Self>> {
        Self::build(adapter, limits, VariantOverrides::default()).await
    }

    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    async fn build(
        adapter: wgpu::Adapter,
        limits: Option<wgpu::Limits>,
        overrides: VariantOverrides,
    ) -> Result<Arc<Self>> {
        let info = adapter.get_info();
        let adapter_limits = adapter.limits();
        let limits = limits.unwrap_or(adapter_limits);
        // Timestamps are optional: the benchmark uses them where the adapter has them.
        let features = adapter.features() & wgpu::Features::TIMESTAMP_QUERY;
        let indirect = adapter
            .get_downlevel_capabilities()
            .flags
            .contains(wgpu::DownlevelFlags::INDIRECT_EXECUTION);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("drconv"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| DrConvError::RequestDevice(format!("{e} on adapter {}", info.name)))?;
        let sink = Arc::new(Mutex::new(ErrorSink::default()));
        {
            let sink = sink.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                if let Ok(mut s) = sink.lock() {
                    s.errors.push(e.to_string());
                }
            }));
        }
        {
            let sink = sink.clone();
            device.set_device_lost_callback(move |reason, msg| {
                if let Ok(mut s) = sink.lock() {
                    let detail = if msg.is_empty() {
                        String::new()
                    } else {
                        format!(": {msg}")
                    };
                    s.lost = Some(format!(
                        "{reason:?}{detail} (every later call fails; make a new GpuContext and \
                         rebuild the layers on it)"
                    ));
                }
            });
        }
        Ok(Arc::new(GpuContext {
            device,
            queue,
            adapter,
            info,
            limits,
            features,
            indirect,
            overrides,
            pipelines: PipelineCache::default(),
            sink,
            guard: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// The shader variants a layer of `config` runs on this context: the adapter's choice
    /// ([`Variants::choose`]) with the overrides of `ContextOptions::variants`.
    pub fn variants(&self, config: &DrConvConfig) -> Variants {
        let traits = AdapterTraits {
            cpu: self.info.device_type == wgpu::DeviceType::Cpu,
            indirect: self.indirect,
        };
        Variants::choose(traits, config, &self.overrides)
    }

    pub fn summary(&self) -> AdapterSummary {
        AdapterSummary::from_info(&self.info)
    }

    pub fn pipelines(&self) -> &PipelineCache {
        &self.pipelines
    }

    /// Turns errors recorded since the last check (and device loss) into a `Result`.
    pub fn check(&self, op: &str) -> Result<()> {
        self.poll_nonblocking();
        let mut s = self.sink.lock().map_err(|_| DrConvError::Gpu {
            op: op.into(),
            message: "error sink poisoned".into(),
        })?;
        if let Some(lost) = &s.lost {
            return Err(DrConvError::DeviceLost(lost.clone()));
        }
        if !s.errors.is_empty() {
            let message = s.errors.join("; ");
            s.errors.clear();
            return Err(DrConvError::Gpu {
                op: op.into(),
                message,
            });
        }
        Ok(())
    }

    /// Whether the device has been lost (every later call will fail).
    pub fn is_lost(&self) -> bool {
        self.sink.lock().map(|s| s.lost.is_some()).unwrap_or(true)
    }

    /// Runs `f` inside out-of-memory and validation error scopes; any error becomes `Err`.
    pub async fn scoped<T>(&self, op: &str, f: impl FnOnce() -> T) -> Result<T> {
        self.check(op)?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let val_err = val.pop().await;
        let oom_err = oom.pop().await;
        if let Some(e) = oom_err.or(val_err) {
            return Err(DrConvError::Gpu {
                op: op.into(),
                message: e.to_string(),
            });
        }
        self.check(op)?;
        Ok(out)
    }

    /// Lets wgpu do its maintenance without blocking. wgpu swallows the errors of calls on a
    /// destroyed or lost device (they succeed silently) and reports the loss only through the
    /// lost callback, which runs at a poll: polling here makes the next `check` see it.
    fn poll_nonblocking(&self) {
        // wgpu panics from `poll` on a device the driver lost; that must not escape as a panic.
        let _ = catch_unwind(AssertUnwindSafe(|| self.device.poll(wgpu::PollType::Poll)));
    }

    /// Blocks (native) until submitted work is done; a no-op on the web, where the browser drives.
    pub fn poll_wait(&self) -> Result<()> {
        let polled = catch_unwind(AssertUnwindSafe(|| {
            self.device.poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: None,
            })
        }));
        let message = match polled {
            Ok(Ok(_)) => return self.check("poll"),
            Ok(Err(e)) => e.to_string(),
            // wgpu panics here when the driver reports the device lost mid-wait.
            Err(_) => "wgpu panicked while waiting for the device".to_string(),
        };
        match self.check("poll") {
            Err(lost @ DrConvError::DeviceLost(_)) => Err(lost),
            _ => Err(DrConvError::Gpu {
                op: "poll".into(),
                message,
            }),
        }
    }
}
