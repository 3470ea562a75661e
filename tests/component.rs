//! drconv inside another program's GPU work: a device the application owns (its error handler
//! untouched), tensors as views of the application's buffers at offsets, recording into its
//! encoder, errors for every misuse, and plans keyed by shape (fresh input buffers rebuild
//! nothing and leak nothing).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use drconv::wgpu;
use drconv::{
    DrConv2d, DrConvConfig, DrConvError, DrConvParams, GpuContext, GpuTensor, Mode,
    OptimizerConfig, Tensor, Trainer,
};

const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

fn config() -> DrConvConfig {
    DrConvConfig::new(3, 4, 3, 3)
        .unwrap()
        .with_padding(1)
        .unwrap()
}

/// The application's own device, with its own uncaptured-error handler counting errors.
fn app_device() -> (wgpu::Adapter, wgpu::Device, wgpu::Queue, Arc<AtomicUsize>) {
    pollster::block_on(async {
        let instance = wgpu::Instance::default();
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions::default())
            .await
            .expect("an adapter (lavapipe on CI)");
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                required_limits: adapter.limits(),
                ..Default::default()
            })
            .await
            .expect("a device");
        let errors = Arc::new(AtomicUsize::new(0));
        let seen = errors.clone();
        device.on_uncaptured_error(Arc::new(move |_e: wgpu::Error| {
            seen.fetch_add(1, Ordering::SeqCst);
        }));
        (adapter, device, queue, errors)
    })
}

fn app_buffer(device: &wgpu::Device, bytes: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("app"),
        size: bytes,
        usage,
        mapped_at_creation: false,
    })
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.data.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn the_callers_handler_still_fires_and_our_errors_come_back_as_results() {
    let (adapter, device, queue, errors) = app_device();
    let ctx = GpuContext::from_wgpu(&adapter, &device, &queue).unwrap();
    assert!(!ctx.owns_device());
    let params = DrConvParams::init(config(), 1).unwrap();
    let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
    let x = Tensor::randn(&[2, 3, 7, 6], 2);
    let xg = layer.upload(&x).unwrap();
    let y = pollster::block_on(async {
        let y = layer.forward(&xg, Mode::Inference).await.unwrap();
        y.read(&ctx).await.unwrap()
    });
    let cpu = drconv::cpu::forward(&params, &x).unwrap().output;
    let (err, ok) = drconv::verify::compare(&y.data, &cpu.data, 1e-5, 1e-4);
    assert!(ok, "forward on the caller's device: max err {err}");
    assert_eq!(
        errors.load(Ordering::SeqCst),
        0,
        "drconv raised errors on the device"
    );

    // An error of the caller's own (a copy past a buffer's end) reaches the caller's handler.
    let small = app_buffer(&device, 16, USAGE);
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(&small, 0, &small, 8, 64);
    queue.submit(Some(encoder.finish()));
    let _ = device.poll(wgpu::PollType::wait_indefinitely());
    assert!(
        errors.load(Ordering::SeqCst) >= 1,
        "the caller's handler was replaced"
    );

    // drconv's own errors still come back as DrConvError, not to the caller's handler.
    let before = errors.load(Ordering::SeqCst);
    let wrong = layer.upload(&Tensor::randn(&[1, 5, 4, 4], 3));
    assert!(matches!(wrong, Err(DrConvError::Shape(_))), "{wrong:?}");
    assert_eq!(errors.load(Ordering::SeqCst), before);
}

#[test]
fn views_at_aligned_offsets_give_the_bits_of_whole_buffers() {
    let ctx = pollster::block_on(GpuContext::new()).unwrap();
    let params = DrConvParams::init(config(), 4).unwrap();
    let x = Tensor::randn(&[2, 3, 9, 8], 5);
    let align = u64::from(ctx.limits().min_storage_buffer_offset_alignment);
    pollster::block_on(async {
        let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
        let whole = layer.upload(&x).unwrap();
        let want = layer.forward(&whole, Mode::Inference).await.unwrap();
        let want = want.read(&ctx).await.unwrap();

        // One application buffer holding the input at one offset and the output at another.
        let x_at = 3 * align;
        let y_at = x_at + (x.data.len() as u64 * 4).div_ceil(align) * align;
        let big = app_buffer(
            ctx.device(),
            y_at + want.data.len() as u64 * 4 + align,
            USAGE,
        );
        let xv = GpuTensor::from_buffer(&ctx, &big, x_at, &x.shape).unwrap();
        let yv = GpuTensor::from_buffer(&ctx, &big, y_at, &want.shape).unwrap();
        ctx.write(&xv, &x.data).unwrap();
        let mut encoder = ctx.encoder("app");
        layer
            .encode_forward_into(&mut encoder, &xv, &yv, Mode::Inference)
            .await
            .unwrap();
        ctx.submit(encoder).await.unwrap();
        assert_eq!(bits(&yv.read(&ctx).await.unwrap()), bits(&want));
    });
}

#[test]
fn backward_and_training_accept_views() {
    let ctx = pollster::block_on(GpuContext::new()).unwrap();
    let params = DrConvParams::init(config(), 6).unwrap();
    let x = Tensor::randn(&[1, 3, 6, 6], 7);
    let gy = Tensor::randn(&[1, 4, 6, 6], 8);
    let align = u64::from(ctx.limits().min_storage_buffer_offset_alignment);
    pollster::block_on(async {
        // Reference: whole buffers.
        let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
        let xg = layer.upload(&x).unwrap();
        let gyg = ctx.upload("gy", &gy).unwrap();
        layer.forward(&xg, Mode::Training).await.unwrap();
        let want = layer.backward(&xg, &gyg).await.unwrap();
        let want_dx = want.x.read(&ctx).await.unwrap();
        let want_dw = want.params[4].read(&ctx).await.unwrap();

        // Views at offsets of one buffer: x, grad_output, grad_input.
        let n = x.data.len().max(gy.data.len()) as u64 * 4;
        let slot = n.div_ceil(align) * align;
        let big = app_buffer(ctx.device(), align + 4 * slot, USAGE);
        let xv = GpuTensor::from_buffer(&ctx, &big, align, &x.shape).unwrap();
        let gv = GpuTensor::from_buffer(&ctx, &big, align + slot, &gy.shape).unwrap();
        let dxv = GpuTensor::from_buffer(&ctx, &big, align + 2 * slot, &x.shape).unwrap();
        ctx.write(&xv, &x.data).unwrap();
        ctx.write(&gv, &gy.data).unwrap();
        let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
        let mut encoder = ctx.encoder("app");
        layer
            .encode_forward(&mut encoder, &xv, Mode::Training)
            .await
            .unwrap();
        let got = layer
            .encode_backward_into(&mut encoder, &xv, &gv, &dxv)
            .await
            .unwrap();
        ctx.submit(encoder).await.unwrap();
        assert_eq!(bits(&dxv.read(&ctx).await.unwrap()), bits(&want_dx));
        assert_eq!(
            bits(&got.params[4].read(&ctx).await.unwrap()),
            bits(&want_dw)
        );

        // A backward of an input whose training forward was not the last of its shape.
        let other = layer.upload(&x).unwrap();
        layer.forward(&other, Mode::Training).await.unwrap();
        let stale = layer.backward(&xv, &gv).await;
        assert!(
            matches!(stale, Err(DrConvError::Config(ref m)) if m.contains("last training forward")),
            "{stale:?}"
        );

        // Training from views: same losses as from whole buffers.
        let opt = OptimizerConfig::Sgd {
            lr: 0.01,
            momentum: 0.0,
            weight_decay: 0.0,
        };
        let target = Tensor::randn(&[1, 4, 6, 6], 9);
        let mut a = Trainer::new(ctx.clone(), &params, opt).await.unwrap();
        let mut b = Trainer::new(ctx.clone(), &params, opt).await.unwrap();
        let tg = ctx.upload("t", &target).unwrap();
        let tv = GpuTensor::from_buffer(&ctx, &big, align + 3 * slot, &target.shape).unwrap();
        ctx.write(&tv, &target.data).unwrap();
        for _ in 0..3 {
            let la = a.step(&xg, &tg, true).await.unwrap().unwrap();
            let lb = b.step(&xv, &tv, true).await.unwrap().unwrap();
            assert_eq!(la.to_bits(), lb.to_bits());
        }
    });
}

/// `Err` of the variant `want`, whose message holds every one of `words`.
fn expect(r: drconv::Result<impl std::fmt::Debug>, want: &str, words: &[&str]) {
    let e = r.expect_err("misuse accepted");
    let m = e.to_string();
    assert!(
        format!("{e:?}").starts_with(want),
        "{want} expected, got {e:?}"
    );
    for w in words {
        assert!(m.contains(w), "`{m}` does not name {w}");
    }
}

#[test]
fn every_misuse_of_a_view_is_an_error_naming_the_rule() {
    let ctx = pollster::block_on(GpuContext::new()).unwrap();
    let align = u64::from(ctx.limits().min_storage_buffer_offset_alignment);
    let shape = [1, 3, 5, 5];
    let big = app_buffer(ctx.device(), 4096, USAGE);
    // Misaligned offset.
    let off = align / 2;
    expect(
        GpuTensor::from_buffer(&ctx, &big, off, &shape),
        "View",
        &[
            &off.to_string(),
            "min_storage_buffer_offset_alignment",
            &align.to_string(),
        ],
    );
    // A view too short for its shape.
    expect(
        GpuTensor::from_buffer(&ctx, &big, 4096 - align, &shape),
        "View",
        &["300 bytes", "4096 bytes"],
    );
    // A buffer without STORAGE.
    let copy_only = app_buffer(
        ctx.device(),
        4096,
        wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
    );
    expect(
        GpuTensor::from_buffer(&ctx, &copy_only, 0, &shape),
        "View",
        &["STORAGE"],
    );
    // An input view without COPY_SRC: refused where it is used.
    let no_src = app_buffer(ctx.device(), 4096, wgpu::BufferUsages::STORAGE);
    let v = GpuTensor::from_buffer(&ctx, &no_src, 0, &shape).unwrap();
    let mut layer = DrConv2d::new(ctx.clone(), &DrConvParams::init(config(), 1).unwrap()).unwrap();
    expect(
        pollster::block_on(layer.forward(&v, Mode::Inference)),
        "View",
        &["input", "COPY_SRC"],
    );
    // A tensor of another context's device: an error, not a panic inside wgpu.
    let other = pollster::block_on(GpuContext::new()).unwrap();
    let foreign = other.upload("x", &Tensor::randn(&shape, 1)).unwrap();
    for mode in [Mode::Inference, Mode::Training] {
        expect(
            pollster::block_on(layer.forward(&foreign, mode)),
            "ForeignTensor",
            &["another device"],
        );
    }
    expect(
        pollster::block_on(foreign.read(&ctx)),
        "ForeignTensor",
        &["another device"],
    );
    ctx.check("after the refusals").unwrap();
}

/// Live buffers and bind groups on `ctx`'s device.
fn live(ctx: &GpuContext) -> (isize, isize) {
    // Dropped objects go once the submissions using them are done; pending queue writes go out
    // with the next submit.
    ctx.queue().submit(std::iter::empty());
    ctx.poll_wait().unwrap();
    ctx.poll_wait().unwrap();
    let c = ctx.device().get_internal_counters().hal;
    (c.buffers.read(), c.bind_groups.read())
}

#[test]
fn fresh_input_buffers_reuse_the_plan_and_leak_nothing() {
    let ctx = pollster::block_on(GpuContext::new()).unwrap();
    let params = DrConvParams::init(config(), 2).unwrap();
    let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
    let x = Tensor::randn(&[2, 3, 8, 8], 3);
    let gy = Tensor::randn(&[2, 4, 8, 8], 4);
    pollster::block_on(async {
        let mut first = None;
        let mut after_first = (0, 0);
        let (mut built, mut pipelines) = (0, 0);
        for call in 0..12 {
            // A freshly allocated input (and gradient) every call, dropped after it.
            let xg = layer.upload(&x).unwrap();
            let gyg = ctx.upload("gy", &gy).unwrap();
            let y = layer.forward(&xg, Mode::Inference).await.unwrap();
            layer.forward(&xg, Mode::Training).await.unwrap();
            layer.backward(&xg, &gyg).await.unwrap();
            let y = y.read(&ctx).await.unwrap();
            drop((xg, gyg));
            ctx.poll_wait().unwrap();
            match &first {
                None => {
                    first = Some(bits(&y));
                    after_first = live(&ctx);
                    built = layer.plans_built();
                    pipelines = ctx.pipelines_compiled();
                }
                Some(f) => {
                    assert_eq!(&bits(&y), f, "call {call}");
                    assert_eq!(layer.plans_built(), built, "call {call} built a plan");
                    assert_eq!(ctx.pipelines_compiled(), pipelines, "call {call} compiled");
                    assert_eq!(
                        live(&ctx),
                        after_first,
                        "call {call}: live buffers, bind groups"
                    );
                }
            }
        }
        // Inference, training and the backward: three plans for the one shape; the counters count.
        assert_eq!(built, 3);
        assert!(after_first.0 > 0, "wgpu counters inactive");
    });
}

#[test]
fn loss_of_a_borrowed_device_is_an_error_not_a_panic() {
    let (adapter, device, queue, _errors) = app_device();
    let ctx = GpuContext::from_wgpu(&adapter, &device, &queue).unwrap();
    let mut layer = DrConv2d::new(ctx.clone(), &DrConvParams::init(config(), 1).unwrap()).unwrap();
    let xg = layer.upload(&Tensor::randn(&[1, 3, 6, 6], 1)).unwrap();
    pollster::block_on(async {
        layer.forward(&xg, Mode::Inference).await.unwrap();
        // The application destroys its device; its lost callback is its own business.
        device.destroy();
        let r = async {
            let y = layer.forward(&xg, Mode::Inference).await?;
            y.read(&ctx).await
        }
        .await;
        let e = r.expect_err("a result from a destroyed device");
        assert!(matches!(e, DrConvError::DeviceLost(_)), "{e:?}");
        // From then on every call says so.
        let again = layer.forward(&xg, Mode::Inference).await;
        assert!(
            matches!(again, Err(DrConvError::DeviceLost(_))),
            "{again:?}"
        );
        assert!(ctx.is_lost());
    });
}
