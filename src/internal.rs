//! Not part of the API: the runtime's building blocks (planner, limits tables, programs, the
//! PRNG), the demo and the benchmark, public only for this crate's own tests, binary and
//! benchmark, and hidden from the documentation. Anything here may change in any release.
//!
//! The modules live at `src/gpu/`, `src/demo/`, ... (paths below), so that the crate's own code
//! names them `crate::gpu`, `crate::demo` (re-exported in `lib.rs`).

#[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
#[path = "bench/mod.rs"]
pub mod bench;
#[cfg(feature = "demo")]
#[path = "demo/mod.rs"]
pub mod demo;
#[path = "gpu/mod.rs"]
pub mod gpu;
#[path = "rng.rs"]
pub mod rng;
