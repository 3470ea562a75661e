//! Which shader variant runs each stage: one decision per layer, from the adapter's kind and the
//! layer's configuration, with an explicit override ([`VariantOverrides`], set through
//! `ContextOptions::variants`) for tests and A/B runs. The plan builders only read the result.
//!
//! GPUs run the correlation as a tiled implicit GEMM with both operands staged in workgroup
//! memory; CPU adapters (lavapipe,
//! SwiftShader, llvmpipe), where every storage load in a loop is a per-lane loop, read
//! channel-last vec4 copies instead, generate 3x3 kernels with fully unrolled vec4 code and run
//! the correlation backward as per-region GEMMs over pixel lists (PERF.md has the measurements).

use std::fmt;
use std::str::FromStr;

use crate::config::DrConvConfig;

/// How the correlation (the per-sample GEMM of the kernel rows with x's im2col) reads its
/// operands: `shaders/correlation.wgsl`'s entry families.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Correlation {
    /// Tiles of 64 x 64 or 32 x 128 outputs on 256 invocations, weights and x both staged in
    /// workgroup memory, the inner dimension cut into K slices where the tiles are too few to
    /// fill a GPU (`shaders/correlation_gemm.wgsl`; GPUs).
    Gemm,
    /// Weight tiles staged in workgroup memory, 64 invocations (the GPU family's earlier
    /// correlation, and where a device offers fewer than 256 invocations per workgroup).
    Staged,
    /// Weights read directly as scalars.
    Direct,
    /// Weights read directly as vec4s (a kernel row, I*k*k values, is a whole number of vec4s).
    Direct4,
    /// Channel-last copies of x and the kernel read as vec4s (I % 4 == 0); the kernel rows go
    /// through a 64 KiB uniform binding (uniform kernel) where they fit and [`Variants::uniform_kernel`] is on.
    ChannelLast,
}

/// The kernel generator (conv_kernel.3, a grouped 1x1 conv, with the sigmoid map).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelGen {
    /// One block of taps per invocation (`kernel_gen.wgsl` `main`; any r).
    Blocked,
    /// Every tap of a block of 8 channels per invocation, weights in registers (`main_r8`;
    /// r <= 8).
    Registers,
    /// Fully unrolled vec4 code for k = 3, r in {4, 8}, I*O % 4 == 0 (`kernel_gen_k3.wgsl`),
    /// which also writes the correlation's channel-last kernel rows.
    UnrolledK3,
    /// One invocation per kernel element (`elements`; any r): on GPUs where the blocks of
    /// `Registers` and `Blocked` are too few to fill the compute units (`crate::gpu::decide`).
    Elements,
}

/// The correlation backward (kernel and input gradients) and with it the guide conv's and the
/// region selection's backward entries.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backward {
    /// Each gradient element gathers its contributors (GPUs, or I or O not a multiple of 4).
    Gather,
    /// Per-region GEMMs over pixel lists on channel-last copies (CPU adapters, I % 4 == 0 and
    /// O % 4 == 0). The same sums in the same order as `Gather`: bitwise the same gradients.
    RegionLists,
}

/// The variants one layer runs. Every combination computes the same function; the choice is
/// speed only (tests check every variant against the others and the CPU reference).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Variants {
    /// The correlation's operand reads.
    pub correlation: Correlation,
    /// The kernel generator.
    pub kernel_gen: KernelGen,
    /// With [`Correlation::ChannelLast`]: kernel rows through the uniform binding where the whole
    /// generated kernel fits it (checked per input shape) and the device binds that much.
    pub uniform_kernel: bool,
    /// The fused correlation's grid is written on the device (indirect dispatch) rather than
    /// sized on the host for the most tiles the regions could need.
    pub device_grid: bool,
    /// The correlation backward.
    pub backward: Backward,
}

/// Forced choices, for tests and A/B runs; `None` leaves a choice to the adapter. A forced
/// variant the layer's shape cannot run falls back as [`Variants::choose`] describes, so one
/// override serves every layer of a model.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct VariantOverrides {
    /// `Gemm` or `Staged` also selects the GPU family for the other choices; any other value the
    /// CPU one.
    pub correlation: Option<Correlation>,
    /// The kernel generator, where the configuration allows it.
    pub kernel_gen: Option<KernelGen>,
    /// `Some(false)`: kernel rows always from a storage buffer. `Some(true)`: through the uniform
    /// binding wherever the shape rule allows, the fused correlation's per-region uniform
    /// bindings included without timing them against the plan without (`None` times them at a
    /// layer shape's first inference plan, see `GpuContext::per_region_uniform_choice`).
    pub uniform_kernel: Option<bool>,
    /// `Some(false)`: the fused grid sized on the host even where the device could size it.
    pub device_grid: Option<bool>,
    /// The correlation backward, where the configuration allows it.
    pub backward: Option<Backward>,
    /// K slices of the GEMM correlation and of the kernel gradient's GEMM instead of as many as
    /// fill the compute units (within what the shape allows: for the correlation at most one
    /// per chunk of 16 inner indices, none empty).
    pub k_slices: Option<u32>,
    /// The compute units the GPU family's plans try to fill (K slices, the guide's pixels per
    /// workgroup, the kernel generator's entry) instead of
    /// [`crate::gpu::decide::ASSUMED_COMPUTE_UNITS`]: no API reports them.
    pub compute_units: Option<u32>,
}

/// What the choice reads of the adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdapterTraits {
    /// A CPU adapter (lavapipe, llvmpipe, SwiftShader, WARP).
    pub cpu: bool,
    /// Dispatch sizes can come from a GPU buffer (`DownlevelFlags::INDIRECT_EXECUTION`).
    pub indirect: bool,
}

impl Variants {
    /// The variants for `config` on an adapter with `traits`, `forced` where it applies.
    ///
    /// - The GPU family (GEMM correlation, gather backward, register kernel generator) on GPUs
    ///   or when `forced.correlation` is `Gemm` or `Staged`; the CPU family otherwise. `Staged`
    ///   only where forced (`crate::gpu::decide` also takes it where a device cannot run the
    ///   GEMM's 256-invocation workgroups).
    /// - CPU family correlation: channel-last where I % 4 == 0 (unless `Direct` or `Direct4` is
    ///   forced), else vec4 rows where I*k*k % 4 == 0 (unless `Direct` is forced), else scalars.
    /// - Kernel generator: the unrolled k = 3 code where it applies and either it is forced or
    ///   the CPU family runs with nothing forced; else `Registers` for r <= 8 (unless `Blocked`
    ///   is forced); else `Blocked`.
    /// - Backward: `RegionLists` in the CPU family where I and O are multiples of 4, unless
    ///   `Gather` is forced.
    pub fn choose(traits: AdapterTraits, config: &DrConvConfig, forced: &VariantOverrides) -> Self {
        let gpu_family = match forced.correlation {
            Some(Correlation::Staged | Correlation::Gemm) => true,
            Some(_) => false,
            None => !traits.cpu,
        };
        let (i, o, k, r) = (
            config.in_channels,
            config.out_channels,
            config.kernel_size,
            config.region_num,
        );
        let correlation = if gpu_family {
            match forced.correlation {
                Some(Correlation::Staged) => Correlation::Staged,
                _ => Correlation::Gemm,
            }
        } else if i.is_multiple_of(4)
            && !matches!(
                forced.correlation,
                Some(Correlation::Direct | Correlation::Direct4)
            )
        {
            Correlation::ChannelLast
        } else if (i * k * k).is_multiple_of(4) && forced.correlation != Some(Correlation::Direct) {
            Correlation::Direct4
        } else {
            Correlation::Direct
        };
        let k3_fits = k == 3 && (r == 4 || r == 8) && (i * o).is_multiple_of(4);
        let kernel_gen = match forced.kernel_gen {
            Some(KernelGen::UnrolledK3) if k3_fits => KernelGen::UnrolledK3,
            None if k3_fits && !gpu_family => KernelGen::UnrolledK3,
            Some(KernelGen::Blocked) => KernelGen::Blocked,
            Some(KernelGen::Elements) => KernelGen::Elements,
            _ if r <= 8 => KernelGen::Registers,
            _ => KernelGen::Blocked,
        };
        let lists_fit = i.is_multiple_of(4) && o.is_multiple_of(4);
        let backward = match gpu_family || forced.backward == Some(Backward::Gather) || !lists_fit {
            true => Backward::Gather,
            false => Backward::RegionLists,
        };
        Variants {
            correlation,
            kernel_gen,
            uniform_kernel: correlation == Correlation::ChannelLast
                && forced.uniform_kernel != Some(false),
            device_grid: traits.indirect && forced.device_grid != Some(false),
            backward,
        }
    }

    /// Whether the correlation stages its weights in workgroup memory (the 64-invocation
    /// entries of `shaders/correlation.wgsl`).
    pub fn staged(&self) -> bool {
        self.correlation == Correlation::Staged
    }

    /// Whether the correlation is the GPU family's tiled GEMM (`shaders/correlation_gemm.wgsl`).
    pub fn gemm(&self) -> bool {
        self.correlation == Correlation::Gemm
    }

    /// Whether the correlation reads channel-last copies of x and the kernel.
    pub fn channel_last(&self) -> bool {
        self.correlation == Correlation::ChannelLast
    }
}

impl fmt::Display for Variants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "correlation={} kernel_gen={} uniform_kernel={} grid={} backward={}",
            self.correlation,
            self.kernel_gen,
            if self.uniform_kernel { "on" } else { "off" },
            if self.device_grid { "device" } else { "host" },
            self.backward
        )
    }
}

/// Names as the enums spell them in snake case (what the CLI's `DRCONV_*` switches, the
/// benchmark and `drconv info` print); `FromStr` reads them and the older spellings after `|`.
macro_rules! named {
    ($ty:ident { $($variant:ident => $name:literal $(| $alias:literal)*),+ $(,)? }) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The value's name (what `FromStr` reads).
            pub fn name(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($name $(| $alias)* => Ok($ty::$variant),)+
                    _ => {
                        let names: Vec<_> = $ty::ALL.iter().map(|v| v.name()).collect();
                        Err(format!("{s:?} is none of {}", names.join(", ")))
                    }
                }
            }
        }
    };
}

named!(Correlation {
    Gemm => "gemm",
    Staged => "staged",
    Direct => "direct",
    Direct4 => "direct4",
    ChannelLast => "channel_last" | "cl4",
});
named!(KernelGen {
    Blocked => "blocked" | "main",
    Registers => "registers" | "r8",
    UnrolledK3 => "unrolled_k3" | "k3",
    Elements => "elements",
});
named!(Backward {
    Gather => "gather",
    RegionLists => "region_lists" | "lists",
});

#[cfg(test)]
mod tests {
    use super::*;

    const CPU: AdapterTraits = AdapterTraits {
        cpu: true,
        indirect: true,
    };
    const GPU: AdapterTraits = AdapterTraits {
        cpu: false,
        indirect: true,
    };

    fn cfg(i: usize, o: usize, k: usize, r: usize) -> DrConvConfig {
        DrConvConfig::new(i, o, k, r).unwrap()
    }

    #[test]
    fn adapters_pick_their_family() {
        let none = VariantOverrides::default();
        let v = Variants::choose(GPU, &cfg(16, 32, 3, 8), &none);
        assert_eq!(
            (v.correlation, v.kernel_gen, v.backward),
            (Correlation::Gemm, KernelGen::Registers, Backward::Gather)
        );
        let staged = VariantOverrides {
            correlation: Some(Correlation::Staged),
            ..Default::default()
        };
        let v = Variants::choose(CPU, &cfg(16, 32, 3, 8), &staged);
        assert_eq!(
            (v.correlation, v.kernel_gen, v.backward),
            (Correlation::Staged, KernelGen::Registers, Backward::Gather)
        );
        let v = Variants::choose(CPU, &cfg(16, 32, 3, 8), &none);
        assert_eq!(
            (v.correlation, v.kernel_gen, v.backward, v.uniform_kernel),
            (
                Correlation::ChannelLast,
                KernelGen::UnrolledK3,
                Backward::RegionLists,
                true
            )
        );
        // I % 4 != 0: vec4 rows only where I*k*k is a multiple of 4; no region-list backward.
        let v = Variants::choose(CPU, &cfg(4 + 2, 8, 3, 12), &none);
        assert_eq!(
            (v.correlation, v.kernel_gen, v.backward),
            (Correlation::Direct, KernelGen::Blocked, Backward::Gather)
        );
    }

    #[test]
    fn forced_variants_fall_back_where_the_shape_cannot_run_them() {
        let forced = VariantOverrides {
            correlation: Some(Correlation::ChannelLast),
            kernel_gen: Some(KernelGen::UnrolledK3),
            ..Default::default()
        };
        // I = 3: no channel-last copies, k = 5: no unrolled 3x3 generator.
        let v = Variants::choose(GPU, &cfg(3, 8, 5, 4), &forced);
        assert_eq!(v.correlation, Correlation::Direct);
        assert_eq!(v.kernel_gen, KernelGen::Registers);
        assert!(!v.uniform_kernel);
        let forced = VariantOverrides {
            device_grid: Some(false),
            ..Default::default()
        };
        assert!(!Variants::choose(GPU, &cfg(4, 8, 3, 4), &forced).device_grid);
    }

    #[test]
    fn names_round_trip() {
        for v in Correlation::ALL {
            assert_eq!(v.name().parse::<Correlation>(), Ok(*v));
        }
        for (alias, v) in [
            ("main", KernelGen::Blocked),
            ("r8", KernelGen::Registers),
            ("k3", KernelGen::UnrolledK3),
        ] {
            assert_eq!(alias.parse::<KernelGen>(), Ok(v));
        }
        assert_eq!("cl4".parse(), Ok(Correlation::ChannelLast));
        assert_eq!("lists".parse(), Ok(Backward::RegionLists));
        assert!("fast"
            .parse::<KernelGen>()
            .unwrap_err()
            .contains("blocked, registers, unrolled_k3"));
    }
}
