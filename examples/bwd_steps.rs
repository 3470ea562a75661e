//! TEMPORARY (not to be committed): per-step backward timing, variant A vs B interleaved.
use drconv::bench::{median, Timer, SHAPES};
use drconv::gpu::backward::{param_grad_buffers, BackwardPlan};
use drconv::gpu::program::Program;
use drconv::gpu::{ForwardPlan, Mode};
use drconv::rng::Rng;
use drconv::{DrConv2d, DrConvParams, GpuContext, Tensor};

fn main() {
    pollster::block_on(run()).unwrap();
}

async fn run() -> drconv::Result<()> {
    let ctx = GpuContext::new().await?;
    let timer = Timer::new(&ctx);
    let shapes: Vec<usize> = std::env::args().skip(1).map(|s| s.parse().unwrap()).collect();
    let va = std::env::var("VA").unwrap_or("old".into());
    let vb = std::env::var("VB").unwrap_or("new".into());
    let reps: usize = std::env::var("REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    for si in shapes {
        let shape = SHAPES[si - 1];
        let config = shape.config()?;
        let params = DrConvParams::init(config, 1)?;
        let mut rng = Rng::new(2);
        let input = shape.input_shape();
        let x = Tensor::new(&input, rng.normal_vec(input.iter().product()))?;
        let layer = DrConv2d::new(ctx.clone(), &params)?;
        let xg = layer.upload(&x)?;
        let fwd = ForwardPlan::build(&ctx, layer.config(), layer.gpu_params(), &xg, Mode::Training)?;
        let mut enc = ctx.encoder("f");
        fwd.program.encode(&mut enc);
        ctx.submit(enc)?;
        ctx.poll_wait()?;
        let mut plans = Vec::new();
        for v in [&va, &vb] {
            std::env::set_var("DRCONV_BWD", v);
            let pg = param_grad_buffers(&ctx, &config)?;
            let b = BackwardPlan::build(&ctx, &config, layer.gpu_params(), &fwd, &pg)?;
            let gy = Rng::new(3).normal_vec(b.grad_output.numel());
            ctx.write(&b.grad_output, &gy)?;
            b.poison(&ctx);
            let mut enc = ctx.encoder("b");
            b.encode(&mut enc);
            ctx.submit(enc)?;
            ctx.poll_wait()?;
            plans.push(b);
        }
        let ga = plans[0].read(&ctx).await?;
        let gb = plans[1].read(&ctx).await?;
        let cmp = |n: &str, a: &[f32], b: &[f32]| {
            let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            let md = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
            let nan = b.iter().any(|v| v.is_nan());
            println!("  {n}: bitwise {same} maxdiff {md:e} nan {nan}");
        };
        println!("{} {va} vs {vb}", shape.name());
        cmp("x", &ga.x.data, &gb.x.data);
        for i in 0..6 {
            cmp(&format!("p{i}"), &ga.params[i], &gb.params[i]);
        }
        cmp("kernel", &ga.kernel.data, &gb.kernel.data);
        cmp("guide", &ga.guide.data, &gb.guide.data);
        cmp("sigmoid", &ga.sigmoid.data, &gb.sigmoid.data);
        cmp("pooled", &ga.pooled.data, &gb.pooled.data);
        // One program per step of each plan, alternating A/B per step.
        let mut labels = Vec::new();
        let mut progs = Vec::new();
        let n = plans[0].program.steps.len().max(plans[1].program.steps.len());
        for i in 0..n {
            for (pi, p) in plans.iter().enumerate() {
                if let Some(s) = p.program.steps.get(i) {
                    labels.push((pi, s.label));
                    progs.push(Program { steps: vec![s.clone()] });
                }
            }
        }
        let refs: Vec<&Program> = progs.iter().collect();
        timer.time_each(&ctx, &refs).await?;
        let mut samples = vec![Vec::new(); refs.len()];
        for _ in 0..reps {
            for (s, ms) in samples.iter_mut().zip(timer.time_each(&ctx, &refs).await?) {
                s.push(ms);
            }
        }
        let mut tot = [0.0f64; 2];
        for ((pi, l), mut s) in labels.into_iter().zip(samples) {
            let lo = s.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = s.iter().copied().fold(0.0, f64::max);
            let m = median(&mut s);
            tot[pi] += m;
            println!("  {} {:<28} {:9.2} ms  [{:.2} .. {:.2}]", if pi == 0 { &va } else { &vb }, l, m, lo, hi);
        }
        println!("  sum {va} {:.1}  {vb} {:.1}", tot[0], tot[1]);
    }
    Ok(())
}
