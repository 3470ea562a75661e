//! The fuzzed entry points, shared by the libFuzzer targets (`cargo +nightly fuzz run NAME`) and
//! the stable replay test `tests/fuzz_corpus_replay.rs` that runs the committed corpus.
//! Each returns normally on any input; a panic, an overflow or a hang is the bug to find.

use drconv::golden::GoldenCase;
use drconv::weights;
use drconv::{DrConvConfig, DrConvError};

/// Every weights entry point on arbitrary bytes (safetensors, and PyTorch checkpoints, which
/// they also read), for a small layer. Returns whether the plain loader accepted the bytes.
pub fn weights_loader(data: &[u8]) -> bool {
    let config = DrConvConfig::new(2, 3, 3, 2).expect("valid config");
    let plain = weights::load_safetensors_bytes(&config, data);
    let prefixed = weights::load_safetensors_with_prefix(&config, data, "m.");
    let inferred = weights::infer_config(data, 1, 1, 1);
    let _ = weights::saved_config(data);
    for r in [plain.as_ref().err(), prefixed.as_ref().err()]
        .into_iter()
        .flatten()
    {
        assert!(
            matches!(r, DrConvError::Weights(_) | DrConvError::Config(_)),
            "{r:?}"
        );
    }
    // Whatever loads must be consistent with the config it was loaded for, and round-trip.
    let accepted = plain.is_ok();
    if let Ok(p) = plain {
        let bytes = weights::save_safetensors_bytes(&p).expect("saving loaded params");
        let again = weights::load_safetensors_bytes(&config, &bytes).expect("reloading");
        assert_eq!(
            again
                .values
                .map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>()),
            p.values
                .map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>())
        );
    }
    if let Ok(c) = inferred {
        c.validate().expect("an inferred config is valid");
    }
    accepted
}

/// A golden case from arbitrary bytes: `case.json`'s text up to the first NUL byte, then the
/// files the loader asks for, in the order it asks, each as a u16 little-endian length and that
/// many bytes (a missing segment is a missing file). Returns whether the case loaded.
pub fn case_loader(data: &[u8]) -> bool {
    let (json, mut rest) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let result = GoldenCase::load_with("fuzz", |file| {
        if file == "case.json" {
            return Ok(json.to_vec());
        }
        if rest.len() < 2 {
            return Err(DrConvError::Case(format!("{file}: no such file")));
        }
        let n = (u16::from_le_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
        let bytes = rest[2..2 + n].to_vec();
        rest = &rest[2 + n..];
        Ok(bytes)
    });
    match result {
        Ok(case) => {
            // A loaded case is self-consistent: its shapes fit its layer.
            let s = case
                .config
                .forward_shape(&case.x.shape)
                .expect("checked shape");
            assert_eq!(s, case.shape);
            true
        }
        Err(e) => {
            assert!(
                matches!(e, DrConvError::Case(_) | DrConvError::Shape(_)),
                "unexpected error kind {e:?}"
            );
            false
        }
    }
}
