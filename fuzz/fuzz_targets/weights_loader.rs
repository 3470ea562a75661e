#![no_main]
//! `cargo +nightly fuzz run weights_loader`: the weights loaders (safetensors, and PyTorch
//! checkpoints: `drconv::pytorch`) on arbitrary bytes.

#[path = "../harness.rs"]
#[allow(dead_code)] // each target uses one of the entry points
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::weights_loader(data);
});
