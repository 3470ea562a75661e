//! The GPU context: adapter, device, queue, the pipeline cache, and error capture.
//!
//! A context drconv creates owns its device: wgpu's default uncaptured-error handler panics, so we
//! record errors instead and turn them into `DrConvError`s at the next checkpoint, and we track
//! device loss so a dead device gives an error rather than a hang. A context on a caller's device
//! ([`GpuContext::from_wgpu`]) installs no handler: our work runs inside error scopes, and device
//! loss shows where a wait or readback fails.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use crate::config::DrConvConfig;
use crate::error::{DrConvError, Result};
use crate::gpu::pipelines::PipelineCache;
use crate::gpu::variants::{AdapterTraits, VariantOverrides, Variants};

/// How to pick and configure the device.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
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

impl ContextOptions {
    /// Only these backends.
    pub fn backends(mut self, backends: wgpu::Backends) -> Self {
        self.backends = Some(backends);
        self
    }

    /// Request these limits instead of everything the adapter offers.
    pub fn limits(mut self, limits: wgpu::Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Force these shader variants.
    pub fn variants(mut self, variants: VariantOverrides) -> Self {
        self.variants = variants;
        self
    }
}

/// A short description of the adapter in use.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdapterSummary {
    /// The adapter's name (e.g. "llvmpipe (LLVM 15.0.6, 256 bits)").
    pub name: String,
    /// Vulkan, Gl, Metal, Dx12 or BrowserWebGpu.
    pub backend: String,
    /// DiscreteGpu, IntegratedGpu, Cpu, VirtualGpu or Other.
    pub device_type: String,
    /// The driver's name.
    pub driver: String,
    /// The driver's version text.
    pub driver_info: String,
}

impl AdapterSummary {
    /// The summary of wgpu's adapter info.
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
///
/// Either drconv makes the device ([`GpuContext::new`], [`GpuContext::with_options`]) or an
/// application hands over its own ([`GpuContext::from_wgpu`]).
///
/// ```
/// # fn main() -> drconv::Result<()> {
/// let ctx = pollster::block_on(drconv::GpuContext::new())?;
/// println!("{} on {}", ctx.summary().name, ctx.summary().backend);
/// # Ok(()) }
/// ```
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) adapter: wgpu::Adapter,
    pub(crate) info: wgpu::AdapterInfo,
    pub(crate) limits: wgpu::Limits,
    pub(crate) features: wgpu::Features,
    /// Whether dispatch sizes can come from a GPU buffer (`DownlevelFlags::INDIRECT_EXECUTION`:
    /// every backend but the oldest GL ES).
    pub(crate) indirect: bool,
    /// Whether drconv made the device (and installed the error and device-lost handlers).
    owned: bool,
    /// Unique in the process: tensors carry it, so a tensor of another context is refused
    /// (wgpu handles of two instances can compare equal, so the device cannot tell).
    id: u64,
    /// The variant choices forced for every layer on this context.
    overrides: VariantOverrides,
    pipelines: PipelineCache,
    sink: Arc<Mutex<ErrorSink>>,
    /// Test aid: guard words appended to every tensor `empty` allocates (see
    /// [`GpuContext::set_guard`]).
    pub(crate) guard: std::sync::atomic::AtomicBool,
    /// Readbacks to the host so far (the burn tests check that a forward and backward make none).
    pub(crate) readbacks: std::sync::atomic::AtomicU64,
    /// Measured choices of the fused correlation's per-region uniform bindings, by layer
    /// configuration and input shape (`crate::gpu::autotune`).
    per_region_uniform: Mutex<Vec<(DrConvConfig, Vec<usize>, bool)>>,
    /// Submissions leave their error scopes pending (`crate::gpu::deferred`).
    pub(crate) deferred: std::sync::atomic::AtomicBool,
    /// The pending error scopes of deferred submissions, with the op that submitted them.
    pub(crate) pending: Mutex<Vec<(String, Pending)>>,
}

/// An error scope's pending result (`crate::gpu::deferred`).
pub(crate) struct Pending(std::pin::Pin<Box<dyn PopFuture>>);

#[cfg(not(target_arch = "wasm32"))]
pub(crate) trait PopFuture:
    std::future::Future<Output = Option<wgpu::Error>> + Send
{
}
#[cfg(not(target_arch = "wasm32"))]
impl<F: std::future::Future<Output = Option<wgpu::Error>> + Send> PopFuture for F {}

/// In the browser the future is a JavaScript promise, which is not `Send`.
#[cfg(target_arch = "wasm32")]
pub(crate) trait PopFuture: std::future::Future<Output = Option<wgpu::Error>> {}
#[cfg(target_arch = "wasm32")]
impl<F: std::future::Future<Output = Option<wgpu::Error>>> PopFuture for F {}

// SAFETY: wasm32 without the atomics feature runs one thread, so the promise is never touched
// from another: the premise of wgpu's `fragile-send-sync-non-atomic-wasm`, which burn turns on.
// It keeps the context `Send + Sync`, as burn's modules and ops must be.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl Send for Pending {}

impl Pending {
    pub(crate) fn new(pop: impl PopFuture + 'static) -> Self {
        Pending(Box::pin(pop))
    }
}

impl std::future::Future for Pending {
    type Output = Option<wgpu::Error>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
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
#[doc(hidden)]
pub fn instance(backends: Option<wgpu::Backends>) -> wgpu::Instance {
    wgpu::Instance::new(instance_descriptor(backends))
}

/// The next context's [`GpuContext::id`].
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Records the loss; every later call fails with it.
fn mark_lost(sink: &Mutex<ErrorSink>, why: String) {
    if let Ok(mut s) = sink.lock() {
        s.lost.get_or_insert(format!(
            "{why} (every later call fails; make a new GpuContext and rebuild the layers on it)"
        ));
    }
}

impl GpuContext {
    /// The default adapter (`WGPU_BACKEND` respected) with its full limits.
    pub async fn new() -> Result<Arc<Self>> {
        Self::with_options(ContextOptions::default()).await
    }

    /// A device on the adapter `opts` selects, with `opts`' limits and variant overrides.
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

    /// [`GpuContext::from_adapter`] running the `variants` forced (as `ContextOptions::variants`).
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub async fn from_adapter_with(
        adapter: wgpu::Adapter,
        limits: Option<wgpu::Limits>,
        variants: VariantOverrides,
    ) -> Result<Arc<Self>> {
        Self::build(adapter, limits, variants).await
    }

    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    async fn build(
        adapter: wgpu::Adapter,
        limits: Option<wgpu::Limits>,
        overrides: VariantOverrides,
    ) -> Result<Arc<Self>> {
        let info = adapter.get_info();
        let limits = limits.unwrap_or(adapter.limits());
        // Timestamps are optional: the benchmark uses them where the adapter has them.
        let features = adapter.features() & wgpu::Features::TIMESTAMP_QUERY;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("drconv"),
                required_features: features,
                required_limits: limits,
                ..Default::default()
            })
            .await
            .map_err(|e| DrConvError::RequestDevice(format!("{e} on adapter {}", info.name)))?;
        let ctx = Self::assemble(adapter, device, queue, overrides, true);
        ctx.install_handlers();
        Ok(Arc::new(ctx))
    }

    /// A context on an application's own device: drconv compiles its pipelines there, allocates
    /// its plans' buffers there and records into the application's encoders, and leaves the
    /// device's uncaptured-error and device-lost handlers as they are. Our own errors are caught
    /// in error scopes and come back as `DrConvError`s; errors the application makes keep
    /// reaching its handler. Device loss is seen where a wait or a readback fails (the lost
    /// callback belongs to the application), and is `DrConvError::DeviceLost` from then on.
    ///
    /// The layers use the device's limits as it was created (`device.limits()`), so request the
    /// adapter's limits when creating it if large layers must fit unsplit. No instance is
    /// needed: wgpu's handles keep theirs alive. One context per device: share it with the
    /// `Arc`, since tensors are checked against the context they were made through.
    ///
    /// ```
    /// # fn main() -> drconv::Result<()> { pollster::block_on(async {
    /// use drconv::wgpu;
    /// let instance = wgpu::Instance::default();
    /// let adapter = instance
    ///     .request_adapter(&wgpu::RequestAdapterOptions::default())
    ///     .await
    ///     .expect("an adapter");
    /// let (device, queue) = adapter
    ///     .request_device(&wgpu::DeviceDescriptor::default())
    ///     .await
    ///     .expect("a device");
    /// let ctx = drconv::GpuContext::from_wgpu(&adapter, &device, &queue)?;
    /// assert!(ctx.device() == &device);
    /// # Ok(()) }) }
    /// ```
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub fn from_wgpu(
        adapter: &wgpu::Adapter,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
    ) -> Result<Arc<Self>> {
        Self::from_wgpu_with_variants(adapter, device, queue, VariantOverrides::default())
    }

    /// [`GpuContext::from_wgpu`] with shader variants forced (tests, A/B runs).
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub fn from_wgpu_with_variants(
        adapter: &wgpu::Adapter,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        overrides: VariantOverrides,
    ) -> Result<Arc<Self>> {
        let ctx = Self::assemble(
            adapter.clone(),
            device.clone(),
            queue.clone(),
            overrides,
            false,
        );
        ctx.check("adopting the device")?;
        Ok(Arc::new(ctx))
    }

    fn assemble(
        adapter: wgpu::Adapter,
        device: wgpu::Device,
        queue: wgpu::Queue,
        overrides: VariantOverrides,
        owned: bool,
    ) -> Self {
        let indirect = adapter
            .get_downlevel_capabilities()
            .flags
            .contains(wgpu::DownlevelFlags::INDIRECT_EXECUTION);
        GpuContext {
            info: adapter.get_info(),
            limits: device.limits(),
            features: device.features(),
            indirect,
            owned,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            adapter,
            device,
            queue,
            overrides,
            pipelines: PipelineCache::default(),
            sink: Arc::new(Mutex::new(ErrorSink::default())),
            guard: std::sync::atomic::AtomicBool::new(false),
            readbacks: std::sync::atomic::AtomicU64::new(0),
            per_region_uniform: Mutex::new(Vec::new()),
            deferred: std::sync::atomic::AtomicBool::new(false),
            pending: Mutex::new(Vec::new()),
        }
    }

    /// On a device drconv made: errors outside our scopes go to the sink instead of wgpu's
    /// panicking default, and loss is recorded when wgpu reports it.
    fn install_handlers(&self) {
        let sink = self.sink.clone();
        self.device
            .on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                if let Ok(mut s) = sink.lock() {
                    s.errors.push(e.to_string());
                }
            }));
        let sink = self.sink.clone();
        self.device.set_device_lost_callback(move |reason, msg| {
            let detail = if msg.is_empty() {
                String::new()
            } else {
                format!(": {msg}")
            };
            mark_lost(&sink, format!("{reason:?}{detail}"));
        });
    }

    /// The device (to create buffers for [`crate::GpuTensor::from_buffer`], or to share it).
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The queue work is submitted on.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// The adapter the device came from.
    pub fn adapter(&self) -> &wgpu::Adapter {
        &self.adapter
    }

    /// The adapter's name, backend, type and driver.
    pub fn info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// The device's limits, which the layers plan against (splitting work that exceeds them).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// The device's features (drconv asks only for `TIMESTAMP_QUERY`, where the adapter has it).
    pub fn features(&self) -> wgpu::Features {
        self.features
    }

    /// Whether dispatch sizes can come from a GPU buffer (`DownlevelFlags::INDIRECT_EXECUTION`).
    pub fn indirect(&self) -> bool {
        self.indirect
    }

    /// This context's number, unique in the process (error messages name it).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether drconv created the device (rather than [`GpuContext::from_wgpu`]).
    pub fn owns_device(&self) -> bool {
        self.owned
    }

    /// The shader variants a layer of `config` runs on this context: the adapter's choice
    /// ([`Variants::choose`]) with the overrides of `ContextOptions::variants`.
    pub fn variants(&self, config: &DrConvConfig) -> Variants {
        Variants::choose(self.traits(), config, &self.overrides)
    }

    /// The variants forced by `ContextOptions::variants`.
    pub fn overrides(&self) -> &VariantOverrides {
        &self.overrides
    }

    /// What the adapter's kind and indirect dispatch say to [`Variants::choose`].
    pub fn traits(&self) -> AdapterTraits {
        AdapterTraits {
            cpu: self.info.device_type == wgpu::DeviceType::Cpu,
            indirect: self.indirect,
        }
    }

    /// Whether the fused correlation of `config` at input `shape` runs its per-(sample, region)
    /// uniform bindings: `Some` once measured on this context (`crate::gpu::autotune`), or
    /// forced by `VariantOverrides::uniform_kernel`; `None` leaves it to the shape rule.
    pub fn per_region_uniform_choice(
        &self,
        config: &DrConvConfig,
        shape: &[usize],
    ) -> Option<bool> {
        if let Some(forced) = self.overrides.uniform_kernel {
            return Some(forced);
        }
        let choices = self
            .per_region_uniform
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        choices
            .iter()
            .find(|(c, s, _)| c == config && s == shape)
            .map(|(_, _, on)| *on)
    }

    /// Records the measured choice of the per-region uniform bindings (the first one stands).
    #[cfg_attr(target_family = "wasm", allow(dead_code))]
    pub(crate) fn record_per_region_uniform(
        &self,
        config: &DrConvConfig,
        shape: &[usize],
        on: bool,
    ) {
        let mut choices = self
            .per_region_uniform
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !choices.iter().any(|(c, s, _)| c == config && s == shape) {
            choices.push((*config, shape.to_vec(), on));
        }
    }

    /// The adapter in a few words.
    pub fn summary(&self) -> AdapterSummary {
        AdapterSummary::from_info(&self.info)
    }

    #[doc(hidden)]
    pub fn pipelines(&self) -> &PipelineCache {
        &self.pipelines
    }

    /// Turns errors recorded since the last check (and device loss) into a `Result`.
    pub fn check(&self, op: &str) -> Result<()> {
        self.poll_nonblocking();
        self.settle_ready();
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

    /// Records an error for the next check to return.
    pub(crate) fn record_error(&self, message: String) {
        if let Ok(mut s) = self.sink.lock() {
            s.errors.push(message);
        }
    }

    /// Whether the device has been lost (every later call will fail).
    pub fn is_lost(&self) -> bool {
        self.sink.lock().map(|s| s.lost.is_some()).unwrap_or(true)
    }

    /// Runs `f` inside out-of-memory and validation error scopes; any error becomes `Err`. With
    /// deferred errors on ([`GpuContext::set_deferred_errors`]) it does not wait for the scopes:
    /// their error comes back from the next call.
    pub async fn scoped<T>(&self, op: &str, f: impl FnOnce() -> T) -> Result<T> {
        if self.deferred_errors() {
            // This may run inside burn's executor, where an error must not fail the work: one
            // recorded earlier is left for the next check (`try_forward`, `settle`); only a
            // lost device stops here.
            if self.is_lost() {
                self.check(op)?;
            }
            let (out, scopes) = self.in_scopes(f);
            self.defer(op, scopes);
            return Ok(out);
        }
        self.check(op)?;
        let (out, [val, oom]) = self.in_scopes(f);
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

    /// Runs `f` inside an out-of-memory and then a validation error scope; returns its value and
    /// the scopes, innermost first, for the caller to pop (or to drop: dropping pops too).
    pub(crate) fn in_scopes<T>(&self, f: impl FnOnce() -> T) -> (T, [wgpu::ErrorScopeGuard; 2]) {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        (f(), [val, oom])
    }

    /// Lets wgpu do its maintenance without blocking. wgpu swallows the errors of calls on a
    /// destroyed or lost device (they succeed silently) and reports the loss only through the
    /// lost callback, which runs at a poll: polling here makes the next `check` see it.
    fn poll_nonblocking(&self) {
        // wgpu panics from `poll` on a device the driver lost; that must not escape as a panic.
        let _ = catch_unwind(AssertUnwindSafe(|| self.device.poll(wgpu::PollType::Poll)));
    }

    /// Records that the device is gone (seen at `op`) and returns the error every later call
    /// gives too.
    pub(crate) fn lost_at(&self, op: &str) -> DrConvError {
        mark_lost(&self.sink, op.to_string());
        match self.check(op) {
            Err(e) => e,
            Ok(()) => DrConvError::DeviceLost(op.to_string()),
        }
    }

    /// Readbacks (GPU to host copies) this context has made so far.
    pub fn readbacks(&self) -> u64 {
        self.readbacks.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Compute pipelines compiled on this context so far (each once per shader entry point).
    pub fn pipelines_compiled(&self) -> usize {
        self.pipelines.len()
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
            // wgpu panics here when the driver reports the device lost mid-wait: on a device we
            // do not own, that is how the loss reaches us.
            Err(_) => {
                let message = "wgpu panicked while waiting for the device".to_string();
                mark_lost(&self.sink, message.clone());
                message
            }
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
