//! The WGSL sources, embedded at compile time. Each op's file in `shaders/` is prefixed with
//! `shaders/common.wgsl` (the shared `Dims` uniform and indexing helpers) to form its module.

/// One WGSL module: a file of `shaders/` and its entry points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shader {
    pub name: &'static str,
    body: &'static str,
    pub entry_points: &'static [&'static str],
}

const COMMON: &str = include_str!("../../shaders/common.wgsl");

macro_rules! shader {
    ($ident:ident, $file:literal, [$($entry:literal),+]) => {
        pub const $ident: Shader = Shader {
            name: $file,
            body: include_str!(concat!("../../shaders/", $file, ".wgsl")),
            entry_points: &[$($entry),+],
        };
    };
}

shader!(ADAPTIVE_POOL, "adaptive_pool", ["main"]);
shader!(KERNEL_LOGITS, "kernel_logits", ["main"]);
shader!(KERNEL_GEN, "kernel_gen", ["main"]);
shader!(GUIDE_CONV, "guide_conv", ["main"]);
shader!(CORRELATION, "correlation", ["all_regions", "selected_region"]);
shader!(REGION_SELECT, "region_select", ["argmax", "gather"]);

/// Every shader module of the crate (the naga validation test walks this list).
pub const ALL: &[Shader] = &[
    ADAPTIVE_POOL,
    KERNEL_LOGITS,
    KERNEL_GEN,
    GUIDE_CONV,
    CORRELATION,
    REGION_SELECT,
];

impl Shader {
    /// The full WGSL source of the module: common prelude + the op's file.
    pub fn source(&self) -> String {
        format!("{COMMON}\n{}", self.body)
    }
}
