//! The WGSL sources, embedded at compile time. Each op's file in `shaders/` is prefixed with
//! `shaders/common.wgsl` (the shared `Dims` uniform and indexing helpers) to form its module.

/// One WGSL module: a file of `shaders/` and its entry points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shader {
    /// The module's name (the pipeline cache's key).
    pub name: &'static str,
    /// The file it is built from, relative to the crate's root (`shaders/<name>.wgsl`; the
    /// benchmark's GEMM lives with the benchmark).
    pub file: &'static str,
    body: &'static str,
    pub entry_points: &'static [&'static str],
    /// A declaration of `body` replaced by another (a variant of a module that differs only in
    /// how one binding is declared).
    swap: Option<(&'static str, &'static str)>,
    /// Other ops' files whose functions and bindings `body` uses (a module that runs two
    /// independent stages in one dispatch); a binding declared twice is kept once.
    with: &'static [&'static str],
}

/// Workgroup size of every 1-D shader (`WG` in `shaders/common.wgsl`).
pub const WG: u32 = 64;

/// Workgroup memory of the correlation (the staged weights, `wsh` in
/// `shaders/correlation.wgsl`), checked against the device.
pub const CORR_WORKGROUP_BYTES: u32 = 8704;

/// Invocations per workgroup of the GPU family's correlation (`GW` in
/// `shaders/correlation_gemm.wgsl`).
pub const GEMM_INVOCATIONS: u32 = 256;

/// Workgroup memory of the GPU family's correlation (in `shaders/correlation_gemm.wgsl`, `sh`:
/// one chunk of both operands of the larger tile, and `xtab`: the chunk's x indices).
pub const GEMM_WORKGROUP_BYTES: u32 = 10496 + 256;

/// Workgroup memory of the GPU family's kernel gradient (`ksh` in
/// `shaders/kernel_grad_gemm.wgsl`).
pub const KERNEL_GRAD_WORKGROUP_BYTES: u32 = 16 * 544;

/// Workgroup memory of the GPU family's guide (`gpart` and `gvals` of `guide_argmax_split_k`
/// in `shaders/guide_conv.wgsl`).
pub const GUIDE_WORKGROUP_BYTES: u32 = 4 * (2048 + 512);

/// The most r * k*k sigmoid values `logits_gen_lists` holds in workgroup memory (`GEN_SIG` in
/// `shaders/gen_lists.wgsl`): larger layers keep the logits' dispatch.
pub const GEN_SIGMOID_MOST: u32 = 1024;

/// Workgroup memory of `logits_gen_lists` (`shaders/gen_lists.wgsl`): the list blocks' scan
/// (`scan4`), the logits' partial sums (`lpart`) and a group's sigmoid map (`gsig`).
pub const LOGITS_GEN_LISTS_WORKGROUP_BYTES: u32 = 16 * 256 + 4 * 256 + 4 * GEN_SIGMOID_MOST;

const COMMON: &str = include_str!("../../shaders/common.wgsl");

macro_rules! shader {
    ($ident:ident, $name:literal, [$($entry:literal),+]) => {
        shader!($ident, $name, concat!("shaders/", $name, ".wgsl"), [$($entry),+]);
    };
    ($ident:ident, $name:literal, $file:expr, [$($entry:literal),+]) => {
        pub const $ident: Shader = Shader {
            name: $name,
            file: $file,
            body: include_str!(concat!("../../", $file)),
            entry_points: &[$($entry),+],
            swap: None,
            with: &[],
        };
    };
}

shader!(
    ADAPTIVE_POOL,
    "adaptive_pool",
    ["main", "pool_rows", "pool_finish", "pool_split"]
);
shader!(KERNEL_LOGITS, "kernel_logits", ["main", "split"]);
shader!(
    KERNEL_GEN,
    "kernel_gen",
    ["blocked", "registers", "elements"]
);
shader!(
    KERNEL_GEN_K3,
    "kernel_gen_k3",
    ["unrolled_r8", "unrolled_r4"]
);
shader!(
    GUIDE_CONV,
    "guide_conv",
    [
        "guide_argmax4",
        "guide_argmax8",
        "guide_argmax4_channel_last",
        "guide_argmax8_channel_last",
        "guide_argmax4_channel_last_k3",
        "guide_argmax_split_k"
    ]
);
shader!(
    CORRELATION,
    "correlation",
    [
        "all_regions",
        "all_regions_direct",
        "selected",
        "selected_direct",
        "all_regions_direct4",
        "selected_direct4",
        "all_regions_channel_last",
        "selected_channel_last",
        "selected_channel_last_per_region"
    ]
);
shader!(
    CORRELATION_GEMM,
    "correlation_gemm",
    ["gemm_all_regions", "gemm_selected", "slice_sum"]
);
shader!(
    KERNEL_GRAD_GEMM,
    "kernel_grad_gemm",
    ["kernel_grad_gemm", "slice_sum"]
);
shader!(
    REGION_SELECT,
    "region_select",
    ["gather", "lists", "tiles", "lists_blocks"]
);
// The benchmark's plain GEMM, beside the benchmark (validated with the others).
shader!(
    MATMUL,
    "matmul",
    "src/bench/matmul.wgsl",
    ["tiled", "blocked", "direct4", "nt4"]
);
shader!(
    REGION_SELECT_BWD,
    "region_select_bwd",
    [
        "guide_grad",
        "corr_mask",
        "big_g_t",
        "guide_grad_g",
        "big_g_split"
    ]
);
shader!(
    CORRELATION_BWD,
    "correlation_bwd",
    [
        "kernel_grad",
        "input_grad",
        "kernel_grad_lists8",
        "kernel_grad_lists4",
        "input_grad_t",
        "kernel_t3"
    ]
);
shader!(
    GUIDE_CONV_BWD,
    "guide_conv_bwd",
    [
        "input_grad",
        "weight_partial",
        "weight_reduce",
        "input_grad_t",
        "weight_partial_t"
    ]
);
shader!(
    KERNEL_GEN_BWD,
    "kernel_gen_bwd",
    [
        "sigmoid_grad",
        "weight_grad",
        "sigmoid_grad_split",
        "sigmoid_grad_sum"
    ]
);
shader!(
    KERNEL_LOGITS_BWD,
    "kernel_logits_bwd",
    [
        "logits_grad",
        "pooled_grad",
        "weight_grad",
        "weight_grad_split"
    ]
);
shader!(ADAPTIVE_POOL_BWD, "adaptive_pool_bwd", ["main", "rows"]);
shader!(MSE, "mse", ["grad", "loss_partial", "loss_reduce"]);
shader!(SGD, "sgd", ["momentum", "plain"]);
shader!(ADAM, "adam", ["main"]);
shader!(ACCUMULATE, "accumulate", ["add"]);
shader!(TRANSPOSE, "transpose", ["transpose", "transpose4"]);

/// `CORRELATION` with the kernel rows of its `_channel_last` entries (binding 6) declared as a 64 KiB
/// uniform buffer instead of a storage buffer, for CPU adapters where the whole kernel fits
/// (`crate::gpu::correlation::fits_uniform_binding`): lavapipe gathers uniform loads with vector
/// instructions, while every storage load inside a loop becomes a per-lane loop.
pub const CORRELATION_UBO: Shader = Shader {
    name: "correlation_ubo",
    file: CORRELATION.file,
    body: CORRELATION.body,
    entry_points: CORRELATION.entry_points,
    swap: Some((
        "var<storage, read> kern4: array<vec4<f32>>;",
        "var<uniform> kern4: array<vec4<f32>, 4096>;",
    )),
    with: &[],
};

/// `GUIDE_CONV` with the channel-last guide weights of its `_channel_last` entries (binding 7) declared as
/// a 64 KiB uniform buffer, where they fit (`Decisions::guide_uniform`): the same
/// lavapipe trade as `CORRELATION_UBO`.
pub const GUIDE_CONV_UBO: Shader = Shader {
    name: "guide_conv_ubo",
    file: GUIDE_CONV.file,
    body: GUIDE_CONV.body,
    entry_points: GUIDE_CONV.entry_points,
    swap: Some((
        "var<storage, read> wt4: array<vec4<f32>>;",
        "var<uniform> wt4: array<vec4<f32>, 4096>;",
    )),
    with: &[],
};

/// The GPU family's pool and guide in one dispatch (`shaders/pool_guide.wgsl`).
pub const POOL_GUIDE: Shader = Shader {
    name: "pool_guide",
    file: "shaders/pool_guide.wgsl",
    body: include_str!("../../shaders/pool_guide.wgsl"),
    // With every entry of the composed files (they stay valid entry points).
    entry_points: &[
        "pool_guide",
        "main",
        "pool_rows",
        "pool_finish",
        "pool_split",
        "guide_argmax4",
        "guide_argmax8",
        "guide_argmax4_channel_last",
        "guide_argmax8_channel_last",
        "guide_argmax4_channel_last_k3",
        "guide_argmax_split_k",
    ],
    swap: None,
    with: &[ADAPTIVE_POOL.body, GUIDE_CONV.body],
};

/// The GPU family's kernel generator and fused-path lists in one dispatch, in inference also
/// with the kernel logits (`shaders/gen_lists.wgsl`).
pub const GEN_LISTS: Shader = Shader {
    name: "gen_lists",
    file: "shaders/gen_lists.wgsl",
    body: include_str!("../../shaders/gen_lists.wgsl"),
    // With every entry of the composed files (they stay valid entry points).
    entry_points: &[
        "gen_lists_blocked",
        "gen_lists_registers",
        "gen_lists_elements",
        "logits_gen_lists",
        "main",
        "split",
        "blocked",
        "registers",
        "elements",
        "gather",
        "lists",
        "tiles",
        "lists_blocks",
    ],
    swap: None,
    with: &[KERNEL_LOGITS.body, KERNEL_GEN.body, REGION_SELECT.body],
};
/// Every shader module of the crate (the naga validation test walks this list).
pub const ALL: &[Shader] = &[
    ADAPTIVE_POOL,
    KERNEL_LOGITS,
    KERNEL_GEN,
    KERNEL_GEN_K3,
    GUIDE_CONV,
    GUIDE_CONV_UBO,
    CORRELATION,
    CORRELATION_UBO,
    CORRELATION_GEMM,
    KERNEL_GRAD_GEMM,
    POOL_GUIDE,
    GEN_LISTS,
    REGION_SELECT,
    MATMUL,
    REGION_SELECT_BWD,
    CORRELATION_BWD,
    GUIDE_CONV_BWD,
    KERNEL_GEN_BWD,
    KERNEL_LOGITS_BWD,
    ADAPTIVE_POOL_BWD,
    MSE,
    SGD,
    ADAM,
    ACCUMULATE,
    TRANSPOSE,
];

impl Shader {
    /// The full WGSL source of the module: common prelude + the op's file.
    pub fn source(&self) -> String {
        let body = match self.swap {
            Some((from, to)) => self.body.replacen(from, to, 1),
            None => self.body.to_string(),
        };
        let mut seen = std::collections::BTreeSet::new();
        let mut out = format!("{COMMON}\n");
        for line in self.with.iter().flat_map(|b| b.lines()).chain(body.lines()) {
            // A binding both composed files declare (the same line) is declared once.
            if line.starts_with("@group(0) @binding(") && !seen.insert(line) {
                continue;
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    /// The binding number of the module's buffer `name` (as its WGSL declares it, e.g. `x` for
    /// `@group(0) @binding(1) var<storage, read> x: array<f32>;`): plan builders bind buffers by
    /// these names, so a binding number lives only in its shader.
    pub fn binding(&self, name: &str) -> Option<u32> {
        self.bindings().find(|(_, n)| *n == name).map(|(b, _)| b)
    }

    /// Every `(binding, name)` the module declares (the common uniform `d` at 0 included).
    pub fn bindings(&self) -> impl Iterator<Item = (u32, &'static str)> {
        let lines = self.with.iter().flat_map(|b| b.lines());
        let mut seen = std::collections::BTreeSet::new();
        let lines = COMMON.lines().chain(lines).chain(self.body.lines());
        let lines = lines.filter(move |l| !l.starts_with("@group(0) @binding(") || seen.insert(*l));
        lines.filter_map(|line| {
            let rest = line.trim().strip_prefix("@group(0) @binding(")?;
            let (number, decl) = rest.split_once(')')?;
            let decl = decl.trim().strip_prefix("var")?;
            let decl = decl.split_once('>').map_or(decl, |(_, name)| name);
            let name = decl.split_once(':')?.0.trim();
            Some((number.parse().ok()?, name))
        })
    }

    /// Whether the module declares `binding` as a writable storage buffer (WebGPU forbids
    /// binding one buffer range there and at any other binding of the same bind group).
    pub fn writable(&self, binding: u32) -> bool {
        let decl = format!("@binding({binding}) var<storage, read_write>");
        std::iter::once(self.body)
            .chain(self.with.iter().copied())
            .any(|b| b.contains(&decl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_swap_replaces_one_declaration() {
        for s in ALL {
            if let Some((from, to)) = s.swap {
                assert_eq!(s.body.matches(from).count(), 1, "{}: {from}", s.name);
                assert!(s.source().contains(to) && !s.source().contains(from));
            }
        }
    }

    #[test]
    fn every_binding_has_one_name_and_every_name_one_binding() {
        for s in ALL {
            let all: Vec<_> = s.bindings().collect();
            assert!(all.len() >= 2, "{}: {all:?}", s.name);
            for (i, (b, n)) in all.iter().enumerate() {
                for (b2, n2) in &all[i + 1..] {
                    assert!(b != b2 && n != n2, "{}: {b} {n} vs {b2} {n2}", s.name);
                }
            }
            assert_eq!(s.binding("d"), Some(0), "{}", s.name);
        }
        assert_eq!(CORRELATION_UBO.binding("kern4"), Some(6));
        assert_eq!(ADAPTIVE_POOL.binding("pooled"), Some(8));
        assert_eq!(POOL_GUIDE.binding("pooled"), Some(8));
        assert_eq!(POOL_GUIDE.binding("x"), Some(1));
        assert_eq!(ADAPTIVE_POOL.binding("nope"), None);
    }

    #[test]
    fn the_uniform_kernel_is_uniform_binding_bytes() {
        let vec4s = crate::gpu::buffers::UNIFORM_BINDING_BYTES / 16;
        let decl = format!("var<uniform> kern4: array<vec4<f32>, {vec4s}>;");
        assert!(CORRELATION_UBO.source().contains(&decl));
    }

    /// A `u32` constant of `shaders/correlation.wgsl`.
    fn corr_const(name: &str) -> u32 {
        const_of(&CORRELATION, name)
    }

    /// A `u32` constant of a module.
    fn const_of(shader: &Shader, name: &str) -> u32 {
        let decl = format!("const {name}: u32 = ");
        let src = shader.source();
        let at = src.find(&decl).unwrap() + decl.len();
        src[at..].split('u').next().unwrap().parse().unwrap()
    }

    /// The most 4-byte words one bank serves in one access of `lanes`, each lane touching
    /// `words` consecutive words from word address `at(lane)`; lanes sharing a word broadcast.
    /// 16-byte accesses go in phases of 8 lanes (128 bytes), 4-byte ones in one of 32.
    fn conflict(lanes: std::ops::Range<u32>, words: u32, at: impl Fn(u32) -> u32) -> usize {
        let phase = 32 / words;
        let lanes: Vec<u32> = lanes.collect();
        let mut worst = 0;
        for group in lanes.chunks(phase as usize) {
            let mut banks = vec![std::collections::BTreeSet::new(); 32];
            for &lane in group {
                for w in at(lane)..at(lane) + words {
                    banks[(w % 32) as usize].insert(w);
                }
            }
            worst = worst.max(banks.iter().map(|b| b.len()).max().unwrap());
        }
        worst
    }

    #[test]
    fn the_staged_weights_have_no_bank_conflict() {
        let (kc_n, rows4_max) = (corr_const("KC"), corr_const("ROWS4_MAX"));
        assert_eq!(16 * kc_n * (rows4_max + 1), CORR_WORKGROUP_BYTES);
        let src = CORRELATION.source();
        // The indices modelled below, as the shader writes them.
        assert!(src.contains("wsh[kc * (rows4 + 1u) + r4] = vec4("));
        assert!(src.contains("w0 = wsh[c * (rows4 + 1u) + 2u * cg];"));
        for groups in [1u32, 2, 4, 8] {
            let rows4 = 2 * groups;
            let lanes_per_group = 64 / groups;
            // Every warp of the 64 invocations, every store of the staging loop.
            for warp in [0..32u32, 32..64] {
                for step in 0..rows4.div_ceil(64 / kc_n) {
                    let store = |li: u32| {
                        let r4 = li / kc_n + step * (64 / kc_n);
                        4 * ((li % kc_n) * (rows4 + 1) + r4.min(rows4 - 1))
                    };
                    assert!(
                        conflict(warp.clone(), 4, store) <= 2,
                        "CG {groups} store {step}"
                    );
                }
                for c in 0..kc_n {
                    let read = |li: u32| 4 * (c * (rows4 + 1) + 2 * (li / lanes_per_group));
                    assert!(conflict(warp.clone(), 4, read) <= 2, "CG {groups} read {c}");
                }
            }
            // The layout before, one f32 per lane at wsh[kc * rows4 + rr / 4][rr % 4]: the
            // model sees its conflict (8-way at CG 1, 32-way at CG 8).
            let old = |li: u32| 4 * ((li % kc_n) * rows4) + (li / kc_n) % 4;
            let want = (4 * rows4 as usize).min(32);
            assert_eq!(conflict(0..32, 1, old), want, "CG {groups} before");
        }
    }

    #[test]
    fn the_generators_sigmoid_map_is_the_size_decide_allows() {
        assert_eq!(const_of(&GEN_LISTS, "GEN_SIG"), GEN_SIGMOID_MOST);
    }

    #[test]
    fn the_gemm_staging_has_no_bank_conflict() {
        let (gw, kc) = (
            const_of(&CORRELATION_GEMM, "GW"),
            const_of(&CORRELATION_GEMM, "KC"),
        );
        let sh4 = const_of(&CORRELATION_GEMM, "SH4");
        assert_eq!(gw, GEMM_INVOCATIONS);
        assert_eq!(16 * sh4 + 16 * kc, GEMM_WORKGROUP_BYTES);
        let src = CORRELATION_GEMM.source();
        // The indices modelled below, as the shader writes and reads them.
        for line in [
            "fn w_kc(e: u32) -> u32 { return (e & 7u) + 8u * (e >> (3u + rows_log2())); }",
            "fn w_row(e: u32) -> u32 { return (e >> 3u) & (tile_rows() - 1u); }",
            "let at = w_kc(e) * (tm + 4u) + w_row(e);",
            "let at = xoff + li + GW * q;",
            "fma_step(&acc, kc * wstride + ty, xoff + kc * (tn / 4u) + tx);",
        ] {
            assert!(src.contains(line), "{line}");
        }
        for (tm, tn) in [(64u32, 64u32), (32, 128)] {
            assert!(kc * (tm + 4 + tn) <= 4 * sh4, "{tm} x {tn} fits");
            // The shader's shifts and masks are the divisions modelled here.
            for e in 0..4 * gw {
                let shifted = (e & 7) + 8 * (e >> (3 + tm.trailing_zeros()));
                assert_eq!(shifted, e % 8 + 8 * (e / (8 * tm)));
                assert_eq!((e >> 3) & (tm - 1), (e / 8) % tm);
                assert_eq!((e >> tn.trailing_zeros()) * tn + (e & (tn - 1)), e);
            }
            let xoff = kc * (tm + 4);
            for warp in (0..gw).step_by(32).map(|l| l..l + 32) {
                // Stores, one f32 per lane: the weights' and x's staging loops.
                for q in 0..tm * kc / gw {
                    let w = |li: u32| {
                        let e = li + gw * q;
                        (e % 8 + 8 * (e / (8 * tm))) * (tm + 4) + (e / 8) % tm
                    };
                    assert_eq!(
                        conflict(warp.clone(), 1, w),
                        1,
                        "{tm}x{tn} weight store {q}"
                    );
                }
                for q in 0..tn * kc / gw {
                    let x = |li: u32| xoff + li + gw * q;
                    assert_eq!(conflict(warp.clone(), 1, x), 1, "{tm}x{tn} x store {q}");
                }
                // Reads, one vec4 per lane: rows 4 ty .. and pixels 4 tx .. of inner index kc.
                for k in 0..kc {
                    let w = |li: u32| 4 * (k * (tm + 4) / 4 + li / (tn / 4));
                    let x = |li: u32| xoff + 4 * (k * (tn / 4) + li % (tn / 4));
                    assert_eq!(conflict(warp.clone(), 4, w), 1, "{tm}x{tn} weight read");
                    assert_eq!(conflict(warp.clone(), 4, x), 1, "{tm}x{tn} x read");
                }
            }
        }
    }

    #[test]
    fn the_kernel_gradient_staging_has_at_most_2_way_bank_conflicts() {
        let g = &KERNEL_GRAD_GEMM;
        let (gw, kc, tm, tn) = (
            const_of(g, "GW"),
            const_of(g, "KC"),
            const_of(g, "TM"),
            const_of(g, "TN"),
        );
        let koff = const_of(g, "KOFF");
        assert_eq!(4 * koff, kc * (tm + 4));
        assert_eq!(16 * 544, KERNEL_GRAD_WORKGROUP_BYTES);
        assert!(4 * 544 >= kc * (tm + 4) + kc * (tn + 4));
        let src = g.source();
        for line in [
            "fn gy_kc(e: u32) -> u32 { return e % 8u + 8u * (e / (8u * TM)); }",
            "fn gy_row(e: u32) -> u32 { return (e / 8u) % TM; }",
            "let at = gy_kc(e) * (TM + 4u) + gy_row(e);",
            "let bt = 4u * KOFF + (li % KC) * (TN + 4u) + li / KC + 16u * q;",
            "let a = ksh[kc * ((TM + 4u) / 4u) + ty];",
            "let bv = ksh[KOFF + kc * ((TN + 4u) / 4u) + tx];",
        ] {
            assert!(src.contains(line), "{line}");
        }
        for warp in (0..gw).step_by(32).map(|l| l..l + 32) {
            for q in 0..4 {
                let a = |li: u32| {
                    let e = li + gw * q;
                    (e % 8 + 8 * (e / (8 * tm))) * (tm + 4) + (e / 8) % tm
                };
                let b = |li: u32| 4 * koff + (li % kc) * (tn + 4) + li / kc + 16 * q;
                assert_eq!(conflict(warp.clone(), 1, a), 1, "gy store {q}");
                assert!(conflict(warp.clone(), 1, b) <= 2, "im2col store {q}");
            }
            for k in 0..kc {
                let a = |li: u32| 4 * (k * (tm + 4) / 4 + li / 16);
                let b = |li: u32| 4 * (koff + k * (tn + 4) / 4 + li % 16);
                assert_eq!(conflict(warp.clone(), 4, a), 1, "gy read");
                assert_eq!(conflict(warp.clone(), 4, b), 1, "im2col read");
            }
        }
    }
}
