//! Central finite differences against the CPU backward on small random layers.
//!
//! The guide gradient is the seed's softmax straight-through, not a true derivative, so:
//! * `dguide` is checked against its formula `S * (G - sum_g S*G)` directly;
//! * everything else is checked by finite differences of the surrogate loss
//!   `L_s = sum gy * corr[region0] + sum dguide0 * guide`, with the region map `region0` and
//!   `dguide0` held fixed at their unperturbed values. Its exact gradient is what the backward
//!   returns: the correlation path with the region frozen (x, the four kernel-path params), plus
//!   ordinary conv backward of the fixed `dguide0` (x, conv_guide weight and bias).
//! * The kernel-path parameters never move the guide, so for them the true loss `sum gy * y`
//!   (region recomputed) is differentiated as well.
//!
//! The forward stores f32 between stages (accumulating in f64), so the steps are f32 values
//! `p +- 1e-2` and the quotient uses the step actually taken.

use drconv::cpu::{backward, correlation, forward};
use drconv::internal::rng::Rng;
use drconv::{DrConvConfig, DrConvParams, ForwardTrace, ParamId, Tensor};

const EPS: f32 = 1e-2;
/// `|fd - analytic| <= ATOL + RTOL * |analytic|`.
const ATOL: f64 = 3e-4;
const RTOL: f64 = 2e-3;

struct Setup {
    name: &'static str,
    params: DrConvParams,
    x: Tensor,
    gy: Tensor,
}

fn setups() -> Vec<Setup> {
    // (name, [I, O, k, r, stride, padding, dilation, B, H, W])
    type Spec = (&'static str, [usize; 10]);
    let specs: [Spec; 6] = [
        ("pad1", [2, 3, 3, 3, 1, 1, 1, 2, 5, 6]),
        ("stride2", [3, 2, 3, 2, 2, 1, 1, 1, 7, 8]),
        ("dilation2", [2, 2, 3, 4, 1, 2, 2, 1, 6, 5]),
        ("k2_overlap_bins", [2, 2, 2, 2, 1, 0, 1, 2, 5, 7]),
        ("k1", [2, 3, 1, 3, 1, 0, 1, 1, 4, 4]),
        ("stride2_dil2_pad0", [2, 2, 3, 3, 2, 0, 2, 1, 9, 8]),
    ];
    specs
        .iter()
        .enumerate()
        .map(|(n, &(name, [i, o, k, r, s, p, d, b, h, w]))| {
            let c = DrConvConfig::new(i, o, k, r)
                .and_then(|c| c.with_stride(s))
                .and_then(|c| c.with_padding(p))
                .and_then(|c| c.with_dilation(d))
                .unwrap();
            let params = DrConvParams::init(c, 100 + n as u64).unwrap();
            let shape = c.forward_shape(&[b, i, h, w]).unwrap();
            let mut rng = Rng::new(200 + n as u64);
            let x = Tensor::new(&[b, i, h, w], rng.normal_vec(b * i * h * w)).unwrap();
            let out = shape.output(&c);
            let gy = Tensor::new(&out, rng.normal_vec(out.iter().product())).unwrap();
            Setup {
                name,
                params,
                x,
                gy,
            }
        })
        .collect()
}

/// The surrogate loss with the region map and the guide gradient held fixed.
fn surrogate(trace: &ForwardTrace, region0: &[i32], dguide0: &Tensor, gy: &Tensor) -> f64 {
    let s = trace.shape;
    let corr = trace.corr.as_ref().unwrap();
    let (o_n, hw) = (gy.shape[1], s.out_height * s.out_width);
    let r = trace.guide.shape[1];
    let mut l = 0.0f64;
    for b in 0..s.batch {
        for o in 0..o_n {
            for p in 0..hw {
                let g = region0[b * hw + p] as usize;
                l += gy.data[(b * o_n + o) * hw + p] as f64
                    * corr.data[((b * r + g) * o_n + o) * hw + p] as f64;
            }
        }
    }
    l + dguide0
        .data
        .iter()
        .zip(&trace.guide.data)
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum::<f64>()
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    a.data
        .iter()
        .zip(&b.data)
        .map(|(&p, &q)| p as f64 * q as f64)
        .sum()
}

/// Central difference of `f` with respect to `v[j]`, using the f32 steps actually taken.
fn central(v: &mut [f32], j: usize, mut f: impl FnMut(&[f32]) -> f64) -> f64 {
    let p0 = v[j];
    let (hp, hm) = (p0 + EPS, p0 - EPS);
    v[j] = hp;
    let lp = f(v);
    v[j] = hm;
    let lm = f(v);
    v[j] = p0;
    (lp - lm) / (hp as f64 - hm as f64)
}

/// Records the worst error and the failures of one comparison.
#[derive(Default)]
struct Tally {
    checked: usize,
    worst_ratio: f64,
    worst: String,
    failures: Vec<String>,
}

impl Tally {
    fn add(&mut self, what: &str, fd: f64, an: f64) {
        self.checked += 1;
        let ratio = (fd - an).abs() / (ATOL + RTOL * an.abs());
        if ratio > self.worst_ratio {
            self.worst_ratio = ratio;
            self.worst = format!("{what}: fd {fd:.6} analytic {an:.6}");
        }
        if ratio > 1.0 && self.failures.len() < 20 {
            self.failures
                .push(format!("{what}: fd {fd:.6} vs analytic {an:.6}"));
        }
    }
}

#[test]
fn gradients_match_finite_differences_of_the_fixed_region_surrogate() {
    let mut failures = Vec::new();
    for st in setups() {
        let trace = forward(&st.params, &st.x).unwrap();
        let grads = backward(&st.params, &st.x, &trace, &st.gy).unwrap();
        let region0 = trace.region_index.clone();
        let dguide0 = grads.guide.clone();
        let mut t = Tally::default();

        // x: all three paths (correlation with the region frozen, guide conv with dguide0, pool).
        let mut xv = st.x.data.clone();
        for j in 0..xv.len() {
            let fd = central(&mut xv, j, |v| {
                let x = Tensor::new(&st.x.shape, v.to_vec()).unwrap();
                surrogate(
                    &forward(&st.params, &x).unwrap(),
                    &region0,
                    &dguide0,
                    &st.gy,
                )
            });
            t.add(&format!("x[{j}]"), fd, grads.x.data[j] as f64);
        }
        // All six parameters.
        for id in ParamId::ALL {
            let mut p = st.params.clone();
            for j in 0..p.get(id).len() {
                let fd = central(p.get_mut(id), j, |v| {
                    let mut q = st.params.clone();
                    q.get_mut(id).copy_from_slice(v);
                    surrogate(&forward(&q, &st.x).unwrap(), &region0, &dguide0, &st.gy)
                });
                t.add(
                    &format!("{}[{j}]", id.name()),
                    fd,
                    grads.params[id.index()][j] as f64,
                );
            }
        }
        println!(
            "surrogate   {:18} {} values, worst |fd-an|/(atol+rtol|an|) = {:.3} at {}",
            st.name, t.checked, t.worst_ratio, t.worst
        );
        failures.extend(t.failures.into_iter().map(|f| format!("{}: {f}", st.name)));
    }
    assert!(
        failures.is_empty(),
        "finite-difference mismatches:\n{}",
        failures.join("\n")
    );
}

#[test]
fn kernel_path_gradients_match_finite_differences_of_the_true_loss() {
    // W1, b1, W3, b3 do not touch the guide, so the region map cannot flip: the real loss
    // sum(gy * y) is differentiable in them and its gradient is the backward's.
    let mut failures = Vec::new();
    for st in setups() {
        let trace = forward(&st.params, &st.x).unwrap();
        let grads = backward(&st.params, &st.x, &trace, &st.gy).unwrap();
        let mut t = Tally::default();
        for id in [
            ParamId::KernelW1,
            ParamId::KernelB1,
            ParamId::KernelW3,
            ParamId::KernelB3,
        ] {
            let mut p = st.params.clone();
            for j in 0..p.get(id).len() {
                let fd = central(p.get_mut(id), j, |v| {
                    let mut q = st.params.clone();
                    q.get_mut(id).copy_from_slice(v);
                    let tr = forward(&q, &st.x).unwrap();
                    assert_eq!(tr.region_index, trace.region_index);
                    dot(&tr.output, &st.gy)
                });
                t.add(
                    &format!("{}[{j}]", id.name()),
                    fd,
                    grads.params[id.index()][j] as f64,
                );
            }
        }
        // The generated kernel, through the public correlation with the region frozen.
        let c = st.params.config;
        let corr_loss = |k: &[f32]| -> f64 {
            let kt = Tensor::new(&trace.kernel.shape, k.to_vec()).unwrap();
            let corr = correlation(&c, &trace.shape, &st.x, &kt);
            let tr = ForwardTrace {
                corr: Some(corr),
                ..trace.clone()
            };
            surrogate(
                &tr,
                &trace.region_index,
                &Tensor::zeros(&trace.guide.shape),
                &st.gy,
            )
        };
        let mut kv = trace.kernel.data.clone();
        for j in 0..kv.len() {
            let fd = central(&mut kv, j, &corr_loss);
            t.add(&format!("kernel[{j}]"), fd, grads.kernel.data[j] as f64);
        }
        println!(
            "kernel-path {:18} {} values, worst |fd-an|/(atol+rtol|an|) = {:.3} at {}",
            st.name, t.checked, t.worst_ratio, t.worst
        );
        failures.extend(t.failures.into_iter().map(|f| format!("{}: {f}", st.name)));
    }
    assert!(
        failures.is_empty(),
        "finite-difference mismatches:\n{}",
        failures.join("\n")
    );
}

#[test]
fn guide_gradient_is_the_softmax_straight_through_and_corr_gradient_is_masked() {
    for st in setups() {
        let c = st.params.config;
        let trace = forward(&st.params, &st.x).unwrap();
        let grads = backward(&st.params, &st.x, &trace, &st.gy).unwrap();
        let corr = trace.corr.as_ref().unwrap();
        let dcorr = grads.corr.as_ref().unwrap();
        let (r, o_n) = (c.region_num, c.out_channels);
        let hw = trace.shape.out_height * trace.shape.out_width;
        let mut worst = 0.0f64;
        for b in 0..trace.shape.batch {
            for p in 0..hw {
                let region = trace.region_index[b * hw + p] as usize;
                let gv: Vec<f64> = (0..r)
                    .map(|g| trace.guide.data[(b * r + g) * hw + p] as f64)
                    .collect();
                // Forward: the argmax is a first maximal index and the output is that region's corr.
                let max = gv.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                assert_eq!(gv[region], max);
                assert!(gv[..region].iter().all(|&v| v < max));
                for o in 0..o_n {
                    let yi = (b * o_n + o) * hw + p;
                    assert_eq!(
                        trace.output.data[yi],
                        corr.data[((b * r + region) * o_n + o) * hw + p]
                    );
                    for g in 0..r {
                        let want = if g == region { st.gy.data[yi] } else { 0.0 };
                        assert_eq!(dcorr.data[((b * r + g) * o_n + o) * hw + p], want);
                    }
                }
                // dguide = S (G - sum S G), G = sum_o gy corr.
                let e: Vec<f64> = gv.iter().map(|v| (v - max).exp()).collect();
                let z: f64 = e.iter().sum();
                let big_g: Vec<f64> = (0..r)
                    .map(|g| {
                        (0..o_n)
                            .map(|o| {
                                st.gy.data[(b * o_n + o) * hw + p] as f64
                                    * corr.data[((b * r + g) * o_n + o) * hw + p] as f64
                            })
                            .sum()
                    })
                    .collect();
                let sg: f64 = (0..r).map(|g| e[g] / z * big_g[g]).sum();
                for g in 0..r {
                    let want = e[g] / z * (big_g[g] - sg);
                    let got = grads.guide.data[(b * r + g) * hw + p] as f64;
                    let err = (got - want).abs();
                    worst = worst.max(err);
                    assert!(
                        err <= 1e-6 + 1e-5 * want.abs(),
                        "{}: dguide {got} vs {want}",
                        st.name
                    );
                }
            }
        }
        // The guide gradients sum to zero over regions at every position (softmax Jacobian).
        for b in 0..trace.shape.batch {
            for p in 0..hw {
                let s: f64 = (0..r)
                    .map(|g| grads.guide.data[(b * r + g) * hw + p] as f64)
                    .sum();
                assert!(s.abs() < 1e-5, "{}: sum_g dguide = {s}", st.name);
            }
        }
        println!(
            "formula     {:18} dguide worst abs err {worst:.2e}",
            st.name
        );
    }
}
