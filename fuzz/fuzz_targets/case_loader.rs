#![no_main]
//! `cargo +nightly fuzz run case_loader`: the golden-case loader on an arbitrary `case.json` and
//! files (layout in `harness::case_loader`).

#[path = "../harness.rs"]
#[allow(dead_code)] // each target uses one of the entry points
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::case_loader(data);
});
