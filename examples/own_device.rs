//! drconv inside an application that owns its GPU: the application creates the wgpu device
//! (with its own error handler), allocates one large buffer, runs a compute pass of its own that
//! doubles the input, then two chained DRConv layers on views at offsets inside that buffer, all
//! in its own command encoder and one submission; it reads the result back and checks it against
//! the CPU reference.
//!
//! `cargo run --release --example own_device`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use drconv::wgpu;
use drconv::{DrConv2d, DrConvConfig, DrConvParams, GpuContext, GpuTensor, Mode, Tensor};

/// The application's own pass: doubles `n` values in place.
const DOUBLE: &str = "
@group(0) @binding(0) var<storage, read_write> v: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < arrayLength(&v)) { v[id.x] = 2.0 * v[id.x]; }
}";

fn main() -> drconv::Result<()> {
    pollster::block_on(run())
}

/// The application's device, and its handler for errors (drconv leaves it in place).
async fn app_device() -> drconv::Result<(wgpu::Adapter, wgpu::Device, wgpu::Queue, Arc<AtomicUsize>)>
{
    let instance = wgpu::Instance::default();
    let adapter = instance
        .request_adapter(&wgpu::RequestAdapterOptions::default())
        .await
        .map_err(|e| drconv::DrConvError::NoAdapter(e.to_string()))?;
    let (device, queue) = adapter
        .request_device(&wgpu::DeviceDescriptor {
            required_limits: adapter.limits(),
            ..Default::default()
        })
        .await
        .map_err(|e| drconv::DrConvError::RequestDevice(e.to_string()))?;
    let app_errors = Arc::new(AtomicUsize::new(0));
    let seen = app_errors.clone();
    device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
        eprintln!("application's handler: {e}");
        seen.fetch_add(1, Ordering::SeqCst);
    }));
    Ok((adapter, device, queue, app_errors))
}

/// The application's own pipeline, bound to `bytes` bytes at `offset` of `buffer`.
fn double_pass(
    device: &wgpu::Device,
    buffer: &wgpu::Buffer,
    offset: u64,
    bytes: u64,
) -> (wgpu::ComputePipeline, wgpu::BindGroup) {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("double"),
        source: wgpu::ShaderSource::Wgsl(DOUBLE.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("double"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("double"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer,
                offset,
                size: std::num::NonZeroU64::new(bytes),
            }),
        }],
    });
    (pipeline, bind)
}

async fn run() -> drconv::Result<()> {
    // 1. The application's device with its own error handler.
    let (adapter, device, queue, app_errors) = app_device().await?;
    let ctx = GpuContext::from_wgpu(&adapter, &device, &queue)?;
    println!("adapter: {} ({})", ctx.info().name, ctx.summary().backend);

    // 2. Two layers: 8 -> 16 channels (4 regions), then 16 -> 8 (2 regions, stride 2).
    let c1 = DrConvConfig::new(8, 16, 3, 4)?.with_padding(1)?;
    let c2 = DrConvConfig::new(16, 8, 3, 2)?
        .with_padding(1)?
        .with_stride(2)?;
    let (p1, p2) = (DrConvParams::init(c1, 1)?, DrConvParams::init(c2, 2)?);
    let mut l1 = DrConv2d::new(ctx.clone(), &p1)?;
    let mut l2 = DrConv2d::new(ctx.clone(), &p2)?;

    // 3. One buffer for everything, views at aligned offsets inside it.
    let x = Tensor::randn(&[2, 8, 24, 24], 3);
    let s1 = c1.forward_shape(&x.shape)?.output(&c1).to_vec();
    let s2 = c2.forward_shape(&s1)?.output(&c2).to_vec();
    let align = u64::from(ctx.limits().min_storage_buffer_offset_alignment);
    let slot = |values: usize| (values as u64 * 4).div_ceil(align) * align;
    let n = |s: &[usize]| s.iter().product::<usize>();
    let (x_at, h_at) = (align, align + slot(n(&x.shape)));
    let y_at = h_at + slot(n(&s1));
    let big = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("application arena"),
        size: y_at + slot(n(&s2)),
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let xv = GpuTensor::from_buffer(&ctx, &big, x_at, &x.shape)?;
    let hv = GpuTensor::from_buffer(&ctx, &big, h_at, &s1)?;
    let yv = GpuTensor::from_buffer(&ctx, &big, y_at, &s2)?;
    queue.write_buffer(&big, x_at, &bytemuck_cast(&x.data));

    // 4. The application's own pass on the input's bytes, then both layers, one encoder.
    let (pipeline, bind) = double_pass(&device, &big, x_at, xv.bytes());
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups(n(&x.shape).div_ceil(64) as u32, 1, 1);
    }
    l1.encode_forward_into(&mut encoder, &xv, &hv, Mode::Inference)
        .await?;
    l2.encode_forward_into(&mut encoder, &hv, &yv, Mode::Inference)
        .await?;
    queue.submit(Some(encoder.finish()));

    // 5. Read back and compare with the CPU reference of the same chain.
    let got = yv.read(&ctx).await?;
    let doubled = Tensor::new(&x.shape, x.data.iter().map(|v| 2.0 * v).collect())?;
    let h = drconv::cpu::forward(&p1, &doubled)?.output;
    let want = drconv::cpu::forward(&p2, &h)?.output;
    let worst = got
        .data
        .iter()
        .zip(&want.data)
        .map(|(g, w)| ((g - w).abs() - (1e-5 + 1e-4 * w.abs())) as f64)
        .fold(f64::MIN, f64::max);
    println!(
        "output {:?}: worst excess over atol 1e-5 + rtol 1e-4: {worst:.3e}",
        got.shape
    );
    let errors = app_errors.load(Ordering::SeqCst);
    if worst > 0.0 || errors > 0 {
        eprintln!("own_device: mismatch or {errors} device errors");
        std::process::exit(1);
    }
    println!("matches the CPU reference; the application's handler saw no error");
    Ok(())
}

fn bytemuck_cast(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|f| f.to_le_bytes()).collect()
}
