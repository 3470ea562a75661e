//! Soak: thousands of forwards and training steps on one small layer, and layers and trainers
//! created and dropped in a loop, with no growth in live GPU objects (wgpu's internal counters,
//! feature "counters": buffers, bind groups, pipelines, GPU memory) or in process memory (RSS
//! from /proc/self/statm, Linux).
//!
//! The default run takes seconds on lavapipe. `DRCONV_SOAK_SCALE=20 cargo test --release --test
//! soak -- --ignored` runs the long version (20x the iterations).

mod limits_common;

use std::sync::Arc;

use drconv::{
    DrConv2d, DrConvConfig, DrConvParams, GpuContext, Mode, OptimizerConfig, Tensor, Trainer,
};

/// Live GPU objects and memory, as wgpu's hal layer counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Live {
    buffers: isize,
    bind_groups: isize,
    compute_pipelines: isize,
    shader_modules: isize,
    buffer_memory: isize,
}

fn live(ctx: &GpuContext) -> Live {
    // Dropped objects are released once the submissions using them are done. Buffers written
    // with `queue.write_buffer` are used by the queue's pending writes, which only go out with
    // the next submit: submit nothing to flush them, then wait.
    ctx.queue().submit(std::iter::empty());
    ctx.poll_wait().unwrap();
    ctx.poll_wait().unwrap();
    let h = ctx.device().get_internal_counters().hal;
    Live {
        buffers: h.buffers.read(),
        bind_groups: h.bind_groups.read(),
        compute_pipelines: h.compute_pipelines.read(),
        shader_modules: h.shader_modules.read(),
        buffer_memory: h.buffer_memory.read(),
    }
}

/// Resident set size in bytes (0 where /proc is not available).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn scale() -> usize {
    std::env::var("DRCONV_SOAK_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

fn config() -> DrConvConfig {
    DrConvConfig::new(3, 4, 3, 2)
        .unwrap()
        .with_padding(1)
        .unwrap()
}

fn random(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, seed)
}

/// One round of everything the soak repeats: forwards in both modes with readbacks, a
/// backward, training steps, and a layer and a trainer created, used and dropped.
struct Work {
    ctx: Arc<GpuContext>,
    params: DrConvParams,
    layer: DrConv2d,
    trainer: Trainer,
    x: drconv::GpuTensor,
    target: drconv::GpuTensor,
    x_host: Tensor,
}

impl Work {
    async fn new() -> Self {
        let ctx = GpuContext::new().await.expect("a GPU adapter");
        let params = DrConvParams::init(config(), 1).unwrap();
        let layer = DrConv2d::new(ctx.clone(), &params).unwrap();
        let trainer = Trainer::new(ctx.clone(), &params, OptimizerConfig::adam(1e-3))
            .await
            .unwrap();
        let x_host = random(&[2, 3, 8, 8], 2);
        let x = ctx.upload("x", &x_host).unwrap();
        let target = ctx.upload("target", &random(&[2, 4, 8, 8], 3)).unwrap();
        Work {
            ctx,
            params,
            layer,
            trainer,
            x,
            target,
            x_host,
        }
    }

    /// `forwards` forwards per mode and `steps` training steps, no readback but the last.
    async fn hot_loop(&mut self, forwards: usize, steps: usize) -> f32 {
        for i in 0..forwards {
            self.layer.forward(&self.x, Mode::Inference).await.unwrap();
            self.layer.forward(&self.x, Mode::Training).await.unwrap();
            if i % 200 == 199 {
                self.ctx.poll_wait().unwrap();
            }
        }
        let y = self.layer.forward(&self.x, Mode::Training).await.unwrap();
        let gy = self.ctx.upload("gy", &random(y.shape(), 4)).unwrap();
        self.layer.backward(&self.x, &gy).await.unwrap();
        for i in 0..steps {
            self.trainer
                .step(&self.x, &self.target, false)
                .await
                .unwrap();
            if i % 200 == 199 {
                self.ctx.poll_wait().unwrap();
            }
        }
        let loss = self
            .trainer
            .step(&self.x, &self.target, true)
            .await
            .unwrap();
        loss.expect("loss read")
    }

    /// Layers, trainers, uploads and readbacks made and dropped `n` times.
    async fn churn(&mut self, n: usize) {
        for i in 0..n {
            let mut layer = DrConv2d::new(self.ctx.clone(), &self.params).unwrap();
            let x = layer.upload(&self.x_host).unwrap();
            let mode = if i % 2 == 0 {
                Mode::Inference
            } else {
                Mode::Training
            };
            let trace = layer.forward_trace(&x, mode).await.unwrap();
            assert!(trace.output.data.iter().all(|v| v.is_finite()));
            if i % 4 == 0 {
                let mut t = Trainer::new(self.ctx.clone(), &self.params, OptimizerConfig::sgd(0.1))
                    .await
                    .unwrap();
                t.step(&x, &self.target, true).await.unwrap();
            }
        }
    }
}

async fn soak(forwards: usize, steps: usize, churn: usize) {
    let mut w = Work::new().await;
    // Warm-up: every plan, pipeline and cache that steady state keeps.
    w.hot_loop(3, 3).await;
    w.churn(4).await;
    let (before, rss_before) = (live(&w.ctx), rss());
    // The counters really count (without wgpu's "counters" feature they read 0 and the
    // comparisons below would prove nothing): one more layer is more live buffers.
    let extra = DrConv2d::new(w.ctx.clone(), &w.params).unwrap();
    assert!(
        live(&w.ctx).buffers > before.buffers,
        "wgpu counters inactive"
    );
    drop(extra);
    assert_eq!(live(&w.ctx), before);

    let t0 = std::time::Instant::now();
    let loss = w.hot_loop(forwards, steps).await;
    let hot = t0.elapsed();
    let after_hot = live(&w.ctx);
    let t1 = std::time::Instant::now();
    w.churn(churn).await;
    let churned = t1.elapsed();
    let (after, rss_after) = (live(&w.ctx), rss());
    // The cost of an error check (a non-blocking poll, so that device loss shows at once).
    let t2 = std::time::Instant::now();
    for _ in 0..10_000 {
        w.ctx.check("timing").unwrap();
    }
    println!("ctx.check: {:.2?} per call", t2.elapsed() / 10_000);

    println!(
        "{forwards} x 2 forwards + {steps} train steps in {hot:.2?} (loss {loss}); {churn} layers \
         made and dropped in {churned:.2?}"
    );
    println!("live before {before:?}\nafter hot loop {after_hot:?}\nafter churn {after:?}");
    println!(
        "RSS {:.1} MiB -> {:.1} MiB",
        rss_before as f64 / 1048576.0,
        rss_after as f64 / 1048576.0
    );
    assert!(loss.is_finite());
    assert_eq!(
        after_hot, before,
        "GPU objects leaked by forwards/backward/training"
    );
    assert_eq!(
        after, before,
        "GPU objects leaked by made-and-dropped layers"
    );
    // Host memory: allocator caching moves a little; a leak per iteration would move a lot
    // (each churned layer holds tens of KiB of buffers, mirrored in host memory on lavapipe).
    let grown = rss_after.saturating_sub(rss_before);
    assert!(
        grown < 24 << 20,
        "RSS grew by {:.1} MiB",
        grown as f64 / 1048576.0
    );
}

#[test]
fn soak_short() {
    pollster::block_on(soak(1000, 1000, 150));
}

#[test]
#[ignore = "long soak: DRCONV_SOAK_SCALE=20 cargo test --release --test soak -- --ignored"]
fn soak_long() {
    let s = scale().max(1);
    pollster::block_on(soak(1000 * s, 1000 * s, 150 * s));
}

#[test]
fn split_plans_do_not_leak() {
    pollster::block_on(async {
        // 8 KiB storage bindings: every plan of 4 x 3 x 16 x 16 is split over the batch, every
        // plan of 1 x 3 x 40 x 40 (18.75 KiB of input) over bands of rows.
        let ctx =
            limits_common::small_ctx(8 << 10, drconv::internal::gpu::limits::MAX_GRID_DIM).await;
        let params = DrConvParams::init(config(), 5).unwrap();
        let shapes = [
            ([4, 3, 16, 16], [4, 4, 16, 16]),
            ([1, 3, 40, 40], [1, 4, 40, 40]),
        ];
        let round = |ctx: Arc<GpuContext>| {
            let params = params.clone();
            async move {
                for (xs, gs) in shapes {
                    let (x_host, gy_host) = (random(&xs, 6), random(&gs, 7));
                    let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
                    let x = layer.upload(&x_host).unwrap();
                    let gy = ctx.upload("gy", &gy_host).unwrap();
                    let y = layer.forward(&x, Mode::Inference).await.unwrap();
                    assert!(layer
                        .plan(&x, Mode::Inference)
                        .await
                        .unwrap()
                        .program
                        .has_copies());
                    layer.forward(&x, Mode::Training).await.unwrap();
                    let g = layer.backward(&x, &gy).await.unwrap();
                    y.read(&ctx).await.unwrap();
                    g.x.read(&ctx).await.unwrap();
                }
            }
        };
        round(ctx.clone()).await;
        let before = live(&ctx);
        for _ in 0..20 * scale() {
            round(ctx.clone()).await;
        }
        assert_eq!(live(&ctx), before, "split plans leaked GPU objects");
    });
}
