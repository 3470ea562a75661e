#![no_main]
//! `cargo +nightly fuzz run weights_loader`: the safetensors loaders on arbitrary bytes.

#[path = "../harness.rs"]
#[allow(dead_code)] // each target uses one of the entry points
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::weights_loader(data);
});
