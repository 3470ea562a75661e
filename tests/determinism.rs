//! Same inputs, bit-identical results: the backward has no atomics and reduces in a fixed order,
//! so two runs on one plan, and runs on freshly built layers, agree bit for bit; so do two
//! trainers taking the same steps.

mod cases;
use cases::bits;

use drconv::golden::GoldenCase;
use drconv::{DrConv2d, GpuContext, Mode, OptimizerConfig, ParamId, Trainer};

fn load(name: &str) -> GoldenCase {
    GoldenCase::load(format!(
        "{}/tests/golden/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn backward_is_bitwise_deterministic() {
    pollster::block_on(async {
        let ctx = GpuContext::new().await.expect("a GPU adapter");
        // seed_kinds: 2 x 16 x 16 = 512 output positions, so the guide weight gradient reduces
        // over two chunks; stride2 and k5_pool11 cover strides and overlapping pool bins.
        for name in ["seed_kinds", "stride2", "k5_pool11", "ties_dup_channel"] {
            let case = load(name);
            let mut runs = Vec::new();
            for _layer in 0..2 {
                let mut layer = DrConv2d::new(ctx.clone(), &case.params).unwrap();
                let x = layer.upload(&case.x).unwrap();
                let gy = ctx
                    .upload("gy", case.grad_output.as_ref().unwrap())
                    .unwrap();
                for _run in 0..2 {
                    layer.plan(&x, Mode::Training).await.unwrap().poison(&ctx);
                    layer.forward(&x, Mode::Training).await.unwrap();
                    layer.backward_plan(&x).await.unwrap().poison(&ctx);
                    runs.push(bits(&layer.backward_trace(&x, &gy).await.unwrap()));
                }
            }
            assert!(runs[0].iter().all(|(_, v)| !v.is_empty()));
            for (i, r) in runs.iter().enumerate().skip(1) {
                for ((name_a, a), (_, b)) in runs[0].iter().zip(r) {
                    assert!(a == b, "{name}: run {i} differs from run 0 in {name_a}");
                }
            }
        }
    });
}

#[test]
fn training_is_bitwise_deterministic() {
    pollster::block_on(async {
        let ctx = GpuContext::new().await.expect("a GPU adapter");
        let case = load("seed_kinds");
        let target = case.tensor("output").unwrap().clone();
        let mut finals = Vec::new();
        for _ in 0..2 {
            let mut trainer = Trainer::new(ctx.clone(), &case.params, OptimizerConfig::adam(1e-3))
                .await
                .unwrap();
            let x = trainer.layer().upload(&case.x).unwrap();
            // Shifted target so the gradients are not zero.
            let shifted = drconv::Tensor {
                shape: target.shape.clone(),
                data: target.data.iter().map(|v| v + 0.1).collect(),
            };
            let t = ctx.upload("target", &shifted).unwrap();
            let mut losses = Vec::new();
            for _ in 0..5 {
                losses.push(trainer.step(&x, &t, true).await.unwrap().unwrap().to_bits());
            }
            let p = trainer.params().await.unwrap();
            let pbits: Vec<u32> = ParamId::ALL
                .iter()
                .flat_map(|&id| p.get(id).iter().map(|v| v.to_bits()).collect::<Vec<_>>())
                .collect();
            finals.push((losses, pbits));
        }
        assert_eq!(
            finals[0].0, finals[1].0,
            "losses differ between two trainers"
        );
        assert!(
            finals[0].1 == finals[1].1,
            "parameters differ between two trainers"
        );
        // And the steps did move the parameters.
        let p0: Vec<u32> = ParamId::ALL
            .iter()
            .flat_map(|&id| {
                case.params
                    .get(id)
                    .iter()
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(finals[0].1 != p0);
    });
}
