//! Training on the GPU: a student layer learns a teacher DRConv's spatially varying filter (a
//! known answer: the teacher's parameters reach zero loss). With SGD(momentum) and with Adam the
//! loss falls by a stated factor in a stated number of steps, and the GPU run matches the CPU
//! reference training loop step for step (losses) and at the end (parameters).

use std::time::Instant;

use drconv::cpu::{forward, mse_loss, train_step};
use drconv::internal::rng::Rng;
use drconv::verify::compare;
use drconv::{
    DrConvConfig, DrConvParams, GpuContext, OptimizerConfig, OptimizerState, ParamId, Tensor,
    Trainer,
};

/// The CPU suite's task (tests/cpu_train.rs): DRConv(3 -> 4, k 3, r 2, padding 1) on 4 x 8x8.
fn teacher_task() -> (DrConvParams, Tensor, Tensor) {
    let c = DrConvConfig::new(3, 4, 3, 2)
        .unwrap()
        .with_padding(1)
        .unwrap();
    let teacher = DrConvParams::init(c, 11).unwrap();
    let student = DrConvParams::init(c, 22).unwrap();
    let mut rng = Rng::new(33);
    let x = Tensor::new(&[4, 3, 8, 8], rng.normal_vec(4 * 3 * 8 * 8)).unwrap();
    let target = forward(&teacher, &x).unwrap().output;
    (student, x, target)
}

struct Run {
    /// Loss before each update, then the loss after the last one.
    losses: Vec<f32>,
    params: DrConvParams,
}

async fn train_gpu(ctx: &std::sync::Arc<GpuContext>, cfg: OptimizerConfig, steps: usize) -> Run {
    let (student, x, target) = teacher_task();
    let mut trainer = Trainer::new(ctx.clone(), &student, cfg).await.unwrap();
    let xg = trainer.layer().upload(&x).unwrap();
    let tg = ctx.upload("target", &target).unwrap();
    let mut losses = Vec::new();
    for _ in 0..steps {
        losses.push(trainer.step(&xg, &tg, true).await.unwrap().unwrap());
    }
    assert_eq!(trainer.steps(), steps as u64);
    let params = trainer.params().await.unwrap();
    losses.push(
        mse_loss(&forward(&params, &x).unwrap().output, &target)
            .unwrap()
            .0,
    );
    Run { losses, params }
}

fn train_cpu(cfg: OptimizerConfig, steps: usize) -> Run {
    let (mut params, x, target) = teacher_task();
    let mut state = OptimizerState::new(cfg).unwrap();
    let mut losses: Vec<f32> = (0..steps)
        .map(|_| train_step(&mut params, &mut state, &x, &target).unwrap())
        .collect();
    losses.push(
        mse_loss(&forward(&params, &x).unwrap().output, &target)
            .unwrap()
            .0,
    );
    Run { losses, params }
}

/// GPU and CPU runs agree: every loss to 1e-3 relative, every parameter within the gradient
/// tolerance (atol 1e-4 + rtol 1e-3). Returns the largest parameter difference.
fn assert_same_run(what: &str, gpu: &Run, cpu: &Run) -> f64 {
    for (t, (g, c)) in gpu.losses.iter().zip(&cpu.losses).enumerate() {
        assert!(
            (g - c).abs() <= 1e-3 * c.abs() + 1e-6,
            "{what}: loss at step {t}: GPU {g} vs CPU {c}"
        );
    }
    let mut worst = 0.0f64;
    for id in ParamId::ALL {
        let (err, ok) = compare(gpu.params.get(id), cpu.params.get(id), 1e-4, 1e-3);
        assert!(
            ok,
            "{what}: {} differs from the CPU run by {err:e}",
            id.name()
        );
        worst = worst.max(err);
    }
    worst
}

#[test]
fn sgd_momentum_learns_and_matches_cpu() {
    pollster::block_on(async {
        let ctx = GpuContext::new().await.expect("a GPU adapter");
        let cfg = OptimizerConfig::sgd(0.05).with_momentum(0.9);
        let gpu = train_gpu(&ctx, cfg, 60).await;
        let cpu = train_cpu(cfg, 60);
        let worst = assert_same_run("SGD(momentum)", &gpu, &cpu);
        let (first, last) = (gpu.losses[0], *gpu.losses.last().unwrap());
        println!("GPU SGD(lr 0.05, momentum 0.9): loss {first:.5} -> {last:.5} in 60 steps; CPU {:.5}; params max diff {worst:.2e}", cpu.losses[60]);
        assert!(first > 0.1, "the task is not trivial: initial loss {first}");
        assert!(
            last < 0.05 * first,
            "SGD: loss {first} -> {last}, expected below 5% of the start"
        );
    });
}

#[test]
fn adam_learns_and_matches_cpu() {
    pollster::block_on(async {
        let ctx = GpuContext::new().await.expect("a GPU adapter");
        let cfg = OptimizerConfig::adam(0.01);
        let gpu = train_gpu(&ctx, cfg, 60).await;
        let cpu = train_cpu(cfg, 60);
        let worst = assert_same_run("Adam", &gpu, &cpu);
        let (first, last) = (gpu.losses[0], *gpu.losses.last().unwrap());
        println!("GPU Adam(lr 0.01): loss {first:.5} -> {last:.5} in 60 steps; CPU {:.5}; params max diff {worst:.2e}", cpu.losses[60]);
        assert!(first > 0.1, "the task is not trivial: initial loss {first}");
        assert!(
            last < 0.15 * first,
            "Adam: loss {first} -> {last}, expected below 15% of the start"
        );
    });
}

/// The other update paths (plain SGD, weight decay in both) match the CPU optimizer too.
#[test]
fn plain_sgd_and_weight_decay_match_cpu() {
    pollster::block_on(async {
        let ctx = GpuContext::new().await.expect("a GPU adapter");
        for (what, cfg) in [
            ("SGD", OptimizerConfig::sgd(0.05)),
            (
                "SGD(momentum, wd)",
                OptimizerConfig::sgd(0.05)
                    .with_momentum(0.5)
                    .with_weight_decay(0.01),
            ),
            (
                "Adam(wd)",
                OptimizerConfig::adam(0.01).with_weight_decay(0.1),
            ),
        ] {
            let gpu = train_gpu(&ctx, cfg, 15).await;
            let cpu = train_cpu(cfg, 15);
            let worst = assert_same_run(what, &gpu, &cpu);
            println!(
                "{what}: loss {:.5} -> {:.5} in 15 steps; params max diff {worst:.2e}",
                gpu.losses[0], gpu.losses[15]
            );
            assert!(gpu.losses[15] < gpu.losses[0], "{what}: loss did not fall");
        }
    });
}

/// Wall time of one step with no readback (forward, loss, backward, update in one submission),
/// on the small task and on the golden `seed_kinds` shape (B2 I8 O8 k3 r4 16x16).
#[test]
fn step_timing() {
    pollster::block_on(async {
        let ctx = GpuContext::new().await.expect("a GPU adapter");
        let (student, x, target) = teacher_task();
        let c = DrConvConfig::new(8, 8, 3, 4)
            .unwrap()
            .with_padding(1)
            .unwrap();
        let mut rng = Rng::new(5);
        let x2 = Tensor::new(&[2, 8, 16, 16], rng.normal_vec(2 * 8 * 16 * 16)).unwrap();
        let t2 = Tensor::new(&[2, 8, 16, 16], rng.normal_vec(2 * 8 * 16 * 16)).unwrap();
        let shapes = [
            ("B4 I3 O4 k3 r2 8x8", student, x, target),
            (
                "B2 I8 O8 k3 r4 16x16",
                DrConvParams::init(c, 6).unwrap(),
                x2,
                t2,
            ),
        ];
        for (what, params, x, target) in shapes {
            let cfg = OptimizerConfig::adam(0.01);
            let mut trainer = Trainer::new(ctx.clone(), &params, cfg).await.unwrap();
            let xg = trainer.layer().upload(&x).unwrap();
            let tg = ctx.upload("target", &target).unwrap();
            trainer.step(&xg, &tg, true).await.unwrap();
            let n = 30;
            let t0 = Instant::now();
            for _ in 0..n {
                assert!(trainer.step(&xg, &tg, false).await.unwrap().is_none());
            }
            let loss = trainer.step(&xg, &tg, true).await.unwrap().unwrap();
            let gpu_ms = t0.elapsed().as_secs_f64() * 1e3 / (n + 1) as f64;
            let (mut p, mut st) = (params.clone(), OptimizerState::new(cfg).unwrap());
            let t0 = Instant::now();
            for _ in 0..5 {
                train_step(&mut p, &mut st, &x, &target).unwrap();
            }
            let cpu_ms = t0.elapsed().as_secs_f64() * 1e3 / 5.0;
            println!(
                "{}: one training step ({what}) {gpu_ms:.2} ms on the GPU, {cpu_ms:.2} ms on the CPU reference; loss {loss:.4}",
                ctx.info().name
            );
            assert!(loss.is_finite());
        }
    });
}
