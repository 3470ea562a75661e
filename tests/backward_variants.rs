//! The backward's CPU-adapter entries (correlation: per-region GEMMs over the pixel lists,
//! channel-last copies, the transposed kernel; guide conv: vec4 weight and x reads; region
//! selection: each G once; `Backward::RegionLists`) against
//! the gather entries every other adapter uses (`Backward::Gather`): both sum every gradient
//! element in the same order, so all gradients must agree bit for bit. On a GPU adapter both runs
//! take the gather entries and the test is trivially true.

mod cases;
use cases::{bits, context_with, forced, Case};

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
        #[rustfmt::skip]
        let cases: [Case; 5] = [
            Case { i: 8, o: 8, batch: 2, h: 9, w: 9, ..Case::K3 },
            Case { o: 12, r: 8, stride: 2, h: 11, w: 10, ..Case::K3 },
            Case { i: 8, k: 1, r: 3, padding: 0, batch: 3, h: 6, w: 7, ..Case::K3 },
            Case { o: 8, k: 5, r: 2, padding: 2, dilation: 2, h: 12, w: 12, ..Case::K3 },
            Case { i: 8, r: 5, batch: 2, h: 14, w: 13, ..Case::K3 },
        ];
        for (n, c) in cases.iter().enumerate() {
            let config = c.config();
            let params = DrConvParams::init(config, 60 + n as u64).unwrap();
            let x = c.input(n as u64);
            let s = config.forward_shape(&c.input_shape()).unwrap();
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
