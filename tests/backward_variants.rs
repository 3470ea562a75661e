//! The backward's CPU-adapter entries (correlation: per-region GEMMs over the pixel lists,
//! channel-last copies, the transposed kernel; guide conv: vec4 weight and x reads; region
//! selection: each G once; `Backward::RegionLists`) against
//! the gather entries every other adapter uses (`Backward::Gather`): both sum every gradient
//! element in the same order, so all gradients must agree bit for bit. On a GPU adapter both runs
//! take the gather entries and the test is trivially true.

mod cases;
use cases::{bits, config, context_with, forced, input, Case};

use drconv::Tensor;
use drconv::{DrConv2d, DrConvParams, Mode};

#[test]
fn cpu_correlation_backward_matches_gather_bitwise() {
    pollster::block_on(async {
        let contexts = [
            context_with(forced(None, None, Some("gather"))).await,
            context_with(forced(None, None, None)).await,
        ];
        // I and O multiples of 4 (the CPU entries), both kernel transposes (k = 3 and the
        // generic k), r > 4 and r <= 4, and more than one guide weight chunk (B*H'*W' > 256).
        let cases: [Case; 5] = [
            (8, 8, 3, 4, 1, 1, 1, [2, 8, 9, 9]),
            (4, 12, 3, 8, 2, 1, 1, [1, 4, 11, 10]),
            (8, 4, 1, 3, 1, 0, 1, [3, 8, 6, 7]),
            (4, 8, 5, 2, 1, 2, 2, [1, 4, 12, 12]),
            (8, 4, 3, 5, 1, 1, 1, [2, 8, 14, 13]),
        ];
        for (n, c) in cases.iter().enumerate() {
            let config = config(c);
            let params = DrConvParams::init(config, 60 + n as u64).unwrap();
            let x = input(c, n as u64);
            let s = config.forward_shape(&c.7).unwrap();
            let gy = Tensor::randn(&s.output(&config), 90 + n as u64);
            let mut runs = Vec::new();
            for (k, ctx) in contexts.iter().enumerate() {
                let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
                if k == 0 {
                    assert_eq!(
                        layer.variants().backward,
                        drconv::internal::gpu::Backward::Gather
                    );
                }
                let xg = layer.upload(&x).unwrap();
                let gyg = ctx.upload("gy", &gy).unwrap();
                layer.plan(&xg, Mode::Training).await.unwrap().poison(ctx);
                layer.forward(&xg, Mode::Training).await.unwrap();
                layer.backward_plan(&xg).await.unwrap().poison(ctx);
                runs.push(bits(&layer.backward_trace(&xg, &gyg).await.unwrap()));
            }
            assert!(runs[0].iter().all(|(_, v)| !v.is_empty()));
            for ((name, a), (_, b)) in runs[0].iter().zip(&runs[1]) {
                let nan = a.iter().any(|v| f32::from_bits(*v).is_nan());
                assert!(
                    !nan,
                    "case {n} {c:?}: {name} has NaN (a poisoned element never written)"
                );
                assert!(
                    a == b,
                    "case {n} {c:?}: {name} differs between the gather and CPU entries"
                );
            }
        }
    });
}
