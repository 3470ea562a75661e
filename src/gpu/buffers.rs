//! Device tensors: a storage buffer with a shape, plus upload and async readback.

use crate::error::{DrConvError, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::limits::{self, TensorSpec};
use crate::tensor::{numel, Tensor};

/// A tensor on the GPU: `shape` f32 (or i32) values at `offset` bytes into a buffer of one
/// device. Cloning shares the buffer. Tensors the crate makes own their buffer (offset 0);
/// [`GpuTensor::from_buffer`] views a caller's buffer. Every tensor remembers the context it was
/// made or viewed through, so a tensor of another context is an error wherever it enters, never
/// a panic or a wrong buffer inside wgpu (whose handles from two instances can compare equal).
#[derive(Debug, Clone)]
pub struct GpuTensor {
    pub(crate) buffer: wgpu::Buffer,
    pub(crate) offset: u64,
    pub(crate) shape: Vec<usize>,
    /// [`GpuContext::id`] of the context it belongs to.
    pub(crate) context: u64,
}

impl GpuTensor {
    /// A view of `shape` f32 values at byte `offset` of the caller's `buffer`, which must have
    /// been created on `ctx`'s device (wgpu cannot tell a buffer's device; a tensor made here
    /// carries `ctx`'s, and every entry point checks it). The offset must be a multiple of the
    /// device's `min_storage_buffer_offset_alignment`, the buffer must hold the shape from the
    /// offset and have `STORAGE` usage; inputs also need `COPY_SRC` and outputs `COPY_DST`
    /// (checked where the view is used).
    ///
    /// ```
    /// # fn main() -> drconv::Result<()> { pollster::block_on(async {
    /// let ctx = drconv::GpuContext::new().await?;
    /// let buffer = ctx.device().create_buffer(&drconv::wgpu::BufferDescriptor {
    ///     label: Some("activations"),
    ///     size: 1 << 20,
    ///     usage: drconv::wgpu::BufferUsages::STORAGE | drconv::wgpu::BufferUsages::COPY_SRC,
    ///     mapped_at_creation: false,
    /// });
    /// let x = drconv::GpuTensor::from_buffer(&ctx, &buffer, 4096, &[1, 8, 16, 16])?;
    /// assert_eq!((x.offset(), x.shape()), (4096, &[1, 8, 16, 16][..]));
    /// # Ok(()) }) }
    /// ```
    pub fn from_buffer(
        ctx: &GpuContext,
        buffer: &wgpu::Buffer,
        offset: u64,
        shape: &[usize],
    ) -> Result<Self> {
        // The shape against the device first: a shape no buffer of this device can hold is
        // `TooLarge`, whatever buffer it claims to be in.
        limits::check_stored(&ctx.limits, &TensorSpec::new("view", shape))?;
        let t = GpuTensor {
            buffer: buffer.clone(),
            offset,
            shape: shape.to_vec(),
            context: ctx.id(),
        };
        t.check_view(ctx, "view", wgpu::BufferUsages::STORAGE)?;
        Ok(t)
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The buffer the values live in (shared with every clone and view of it).
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// The byte offset of the first value in [`GpuTensor::buffer`].
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The bytes the values take (4 per value).
    pub fn bytes(&self) -> u64 {
        self.numel() as u64 * 4
    }

    /// The number of values.
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// Whether `self` and `other` are the same bytes of the same buffer.
    pub(crate) fn same_view(&self, other: &GpuTensor) -> bool {
        self.buffer == other.buffer && self.offset == other.offset
    }

    /// The binding of the element range `(start, len)` (elements) of this tensor, from
    /// [`limits::ranges`].
    pub(crate) fn range(&self, (start, len): (usize, usize)) -> wgpu::BufferBinding<'_> {
        wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset + start as u64 * 4,
            size: std::num::NonZeroU64::new(len as u64 * 4),
        }
    }

    /// The tensor must be of `ctx`'s device, start at an aligned offset, fit in its buffer and
    /// have `usage`: checked before anything is recorded, so misuse is an error naming the value
    /// and the rule, not a panic or a validation error in the caller's encoder.
    pub(crate) fn check_view(
        &self,
        ctx: &GpuContext,
        what: &str,
        usage: wgpu::BufferUsages,
    ) -> Result<()> {
        if self.context != ctx.id() {
            return Err(DrConvError::ForeignTensor(format!(
                "{what} of shape {:?} belongs to another device (GpuContext #{}) than the one it \
                 is used on (#{}, {}): upload it through that context, or view a buffer of its \
                 device with GpuTensor::from_buffer(&ctx, ..); share one GpuContext per device",
                self.shape,
                self.context,
                ctx.id(),
                ctx.info.name
            )));
        }
        let align = u64::from(ctx.limits.min_storage_buffer_offset_alignment);
        if !self.offset.is_multiple_of(align) {
            return Err(DrConvError::View(format!(
                "{what} starts at byte offset {} of its buffer, which is not a multiple of the \
                 device's min_storage_buffer_offset_alignment ({align})",
                self.offset
            )));
        }
        let missing = usage - self.buffer.usage();
        if !missing.is_empty() {
            return Err(DrConvError::View(format!(
                "{what}'s buffer has usage {:?} but needs {missing:?} as well",
                self.buffer.usage()
            )));
        }
        self.check_holds(what)
    }

    /// The buffer must hold the shape from the offset: a short buffer would make the shaders
    /// read past its end (clamped, silently wrong) or the copies fail.
    pub(crate) fn check_holds(&self, what: &str) -> Result<()> {
        let spec = TensorSpec::new(what, &self.shape);
        let end = self.offset.saturating_add(spec.bytes());
        if end > self.buffer.size() {
            return Err(DrConvError::View(format!(
                "{what} of shape {:?} needs {} bytes from offset {} (to byte {end}) but its \
                 buffer holds {} bytes",
                self.shape,
                spec.bytes(),
                self.offset,
                self.buffer.size()
            )));
        }
        Ok(())
    }

    /// Reads the tensor back as f32 (async: the browser cannot block on the GPU).
    pub async fn read(&self, ctx: &GpuContext) -> Result<Tensor> {
        self.check_view(ctx, "tensor read back", wgpu::BufferUsages::COPY_SRC)?;
        let bytes = ctx
            .read_bytes(&self.buffer, self.offset, self.bytes())
            .await?;
        Tensor::new(&self.shape, bytemuck::cast_slice(&bytes).to_vec())
    }

    /// Reads an i32 tensor (the region map) back.
    pub async fn read_i32(&self, ctx: &GpuContext) -> Result<Vec<i32>> {
        self.check_view(ctx, "tensor read back", wgpu::BufferUsages::COPY_SRC)?;
        let bytes = ctx
            .read_bytes(&self.buffer, self.offset, self.bytes())
            .await?;
        Ok(bytemuck::cast_slice(&bytes).to_vec())
    }
}

/// The guard sentinel at word `i` of a buffer: a NaN whose payload depends on the position, so a
/// stray store of another tensor's guard word (a shader copying out of range) still shows, and
/// so does any arithmetic on one (which canonicalises the payload).
fn guard_word(i: u64) -> u32 {
    0x7fc0_0000 | ((i as u32).wrapping_mul(0x9e37_79b1) >> 10) | 1
}

/// Bytes of the uniform binding a shader may declare over a tensor (`array<vec4<f32>, 4096>`):
/// WebGPU's default `max_uniform_buffer_binding_size`.
pub const UNIFORM_BINDING_BYTES: u64 = 65536;

/// The usages every tensor buffer gets: bound as storage, copied in and out.
pub const TENSOR_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

impl GpuContext {
    /// Checks a tensor of `numel` f32 against the device's buffer and binding limits (and u32
    /// indexing) before anything is allocated; returns its size in bytes.
    pub fn check_tensor_size(&self, what: &str, numel: usize) -> Result<u64> {
        let t = TensorSpec::new(what, &[numel]);
        limits::check_bound(&self.limits, &t)?;
        Ok(t.bytes())
    }

    /// An uninitialised device tensor (its contents are whatever the device gives: callers
    /// always overwrite it, and tests poison it first).
    pub fn empty(&self, label: &str, shape: &[usize]) -> Result<GpuTensor> {
        // Also refuses empty shapes; checked in u128, so no overflow before the refusal.
        let spec = TensorSpec::new(label, shape);
        limits::check_bound(&self.limits, &spec)?;
        Ok(self.alloc(label, &spec, shape, wgpu::BufferUsages::empty(), 0))
    }

    /// Test aid: from now on `empty` and `empty_stored` double every tensor's buffer and fill the
    /// second half with a sentinel, which shaders see as part of the binding. Vulkan drivers drop
    /// out-of-range stores and WebGPU clamps them onto the last element, so a shader writing past
    /// its tensor can be right natively and wrong in a browser; with guards the stray store lands
    /// in the guard, where [`GpuContext::guard_intact`] finds it. Costs memory: tests only.
    #[doc(hidden)]
    pub fn set_guard(&self, on: bool) {
        self.guard.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    #[doc(hidden)]
    pub fn guarded(&self) -> bool {
        self.guard.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether `t`'s guard (if it has one) still holds the sentinel everywhere.
    #[doc(hidden)]
    pub async fn guard_intact(&self, t: &GpuTensor) -> Result<bool> {
        let data = (t.numel() as u64 * 4).max(16);
        let size = t.buffer.size();
        if size <= data {
            return Ok(true);
        }
        let bytes = self.read_bytes(&t.buffer, 0, size).await?;
        let words: &[u32] = bytemuck::cast_slice(&bytes);
        let first = data as usize / 4;
        Ok(words[first..]
            .iter()
            .zip(first as u64..)
            .all(|(&w, i)| w == guard_word(i)))
    }

    /// A device tensor that is only copied to and from (never bound whole by a shader), so only
    /// `max_buffer_size` limits it: the full tensors of a plan split over batch and output
    /// channels.
    #[doc(hidden)]
    pub fn empty_stored(&self, label: &str, shape: &[usize]) -> Result<GpuTensor> {
        let spec = TensorSpec::new(label, shape);
        limits::check_stored(&self.limits, &spec)?;
        Ok(self.alloc(label, &spec, shape, wgpu::BufferUsages::empty(), 0))
    }

    /// [`GpuContext::empty`], also bindable as the uniform binding of `UNIFORM_BINDING_BYTES` bytes a
    /// shader declares (the correlation's kernel rows or the guide's weights where they fit,
    /// see `crate::gpu::correlation::fits_uniform_binding`): the buffer is at least that large.
    #[doc(hidden)]
    pub fn empty_uniform(&self, label: &str, shape: &[usize]) -> Result<GpuTensor> {
        self.empty_uniform_from(label, shape, 0)
    }

    /// [`GpuContext::empty_uniform`] bindable as a uniform binding from every byte offset up to `last`
    /// (the last (sample, region)'s kernel rows, `fits_per_region_uniform`).
    #[doc(hidden)]
    pub fn empty_uniform_from(&self, label: &str, shape: &[usize], last: u64) -> Result<GpuTensor> {
        let spec = TensorSpec::new(label, shape);
        limits::check_bound(&self.limits, &spec)?;
        Ok(self.alloc(
            label,
            &spec,
            shape,
            wgpu::BufferUsages::UNIFORM,
            last + UNIFORM_BINDING_BYTES,
        ))
    }

    /// The buffer of a checked tensor: at least one vec4 (shaders may also view a tensor as
    /// array<vec4<f32>>) and `min_bytes`, plus the test guard when it is on.
    fn alloc(
        &self,
        label: &str,
        spec: &TensorSpec,
        shape: &[usize],
        usage: wgpu::BufferUsages,
        min_bytes: u64,
    ) -> GpuTensor {
        let bytes = spec.bytes().max(16);
        let size = (if self.guarded() { 2 * bytes } else { bytes }).max(min_bytes);
        // With guards on, everything past the tensor is guard.
        let guard = if self.guarded() { size - bytes } else { 0 };
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: TENSOR_USAGE | usage,
            mapped_at_creation: false,
        });
        if guard > 0 {
            let first = bytes / 4;
            let words: Vec<u32> = (first..first + guard / 4).map(guard_word).collect();
            self.queue
                .write_buffer(&buffer, bytes, bytemuck::cast_slice(&words));
        }
        GpuTensor {
            buffer,
            offset: 0,
            shape: shape.to_vec(),
            context: self.id(),
        }
    }

    /// Uploads a host tensor.
    pub fn upload(&self, label: &str, t: &Tensor) -> Result<GpuTensor> {
        // On a lost device allocations "succeed" silently: say so here instead.
        self.check(label)?;
        // Only stored: the plans check what they bind (a split plan copies inputs in chunks).
        let g = self.empty_stored(label, &t.shape)?;
        self.queue
            .write_buffer(&g.buffer, 0, bytemuck::cast_slice(&t.data));
        Ok(g)
    }

    /// Overwrites a device tensor with host data of the same element count.
    pub fn write(&self, dst: &GpuTensor, data: &[f32]) -> Result<()> {
        if data.len() != dst.numel() {
            return Err(DrConvError::Shape(format!(
                "writing {} values into a tensor of shape {:?} ({} values)",
                data.len(),
                dst.shape,
                dst.numel()
            )));
        }
        dst.check_view(self, "tensor written", wgpu::BufferUsages::COPY_DST)?;
        self.queue
            .write_buffer(&dst.buffer, dst.offset, bytemuck::cast_slice(data));
        Ok(())
    }

    /// Fills a buffer with one f32 value (tests poison outputs with NaN before a run).
    #[doc(hidden)]
    pub fn fill(&self, dst: &GpuTensor, value: f32) {
        let data = vec![value; dst.numel()];
        self.queue
            .write_buffer(&dst.buffer, dst.offset, bytemuck::cast_slice(&data));
    }

    #[doc(hidden)]
    pub async fn read_f32(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        let bytes = self.read_bytes(buffer, 0, len as u64 * 4).await?;
        Ok(bytemuck::cast_slice(&bytes).to_vec())
    }

    /// Copies `size` bytes of `buffer` from byte `offset` to a staging buffer and maps it. Waits with `poll` on
    /// native; on the web the browser resolves the map and the future wakes.
    #[doc(hidden)]
    pub async fn read_bytes(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        size: u64,
    ) -> Result<Vec<u8>> {
        self.check("readback")?;
        self.readbacks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if size == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, size);
        self.submit(encoder).await?;
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.poll_wait()?;
        let mapped = rx
            .await
            .map_err(|_| DrConvError::Map("map callback dropped (device lost?)".into()))?;
        if let Err(e) = mapped {
            self.check("readback")?;
            // Our own fresh staging buffer fails to map only when the device is gone. On a device
            // we do not own this is where its loss reaches us: every later call reports it.
            return Err(self.lost_at(&format!("mapping a readback failed: {e}")));
        }
        let data = staging
            .get_mapped_range(..)
            .map_err(|e| DrConvError::Map(e.to_string()))?
            .to_vec();
        staging.unmap();
        self.check("readback")?;
        Ok(data)
    }

    /// Submits `encoder` inside error scopes, so that an error of ours comes back here as a
    /// `DrConvError` (or, with deferred errors on, from the next call) and never reaches the
    /// handler of a caller who owns the device.
    pub async fn submit(&self, encoder: wgpu::CommandEncoder) -> Result<()> {
        self.submit_deferred("submit", encoder).await
    }

    pub fn encoder(&self, label: &str) -> wgpu::CommandEncoder {
        self.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
    }
}
