//! Broken `drconv.DRConv2d` nodes fail the model's generation with a message naming the node,
//! the tensor or attribute and the value (`tests/onnx/*.onnx`, made by
//! `python/make_onnx_fixtures.py`): never a panic deep in generated code.

use std::panic::{catch_unwind, AssertUnwindSafe};

use burn_onnx::ModelGen;

/// The message generation panics with on `name`.onnx (burn-onnx reports errors by panicking,
/// which fails the user's build script with this text).
fn generation_error(name: &str) -> String {
    let input = format!(
        "{}/../../tests/onnx/{name}.onnx",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = std::env::temp_dir().join(format!("drconv-hook-errors-{name}"));
    let result = catch_unwind(AssertUnwindSafe(|| {
        ModelGen::new()
            .input(&input)
            .register_custom_op(drconv::onnx::DrConv2dOp)
            .out_dir(out.to_str().unwrap())
            .run_from_cli();
    }));
    let _ = std::fs::remove_dir_all(&out);
    let payload = result.expect_err(&format!("{name}.onnx generated a model"));
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Named test cases: the broken file and what its message must say.
struct Case {
    file: &'static str,
    says: &'static [&'static str],
}

const CASES: [Case; 4] = [
    Case {
        file: "missing_weight",
        says: &["drconv.DRConv2d node", "6 inputs", "conv_guide.bias"],
    },
    Case {
        file: "wrong_shape",
        says: &[
            "drconv.DRConv2d node",
            "conv_kernel.3.weight",
            "[22, 2, 1, 1]",
            "[24, 2, 1, 1]",
        ],
    },
    Case {
        file: "unknown_attribute",
        says: &["drconv.DRConv2d node", "unknown attribute `groups`"],
    },
    Case {
        file: "computed_weight",
        says: &["drconv.DRConv2d node", "conv_guide.weight", "initializer"],
    },
];

#[test]
fn broken_nodes_fail_generation_with_a_named_error() {
    for case in CASES {
        let message = generation_error(case.file);
        for word in case.says {
            assert!(
                message.contains(word),
                "{}: {word:?} not in {message:?}",
                case.file
            );
        }
    }
}

#[test]
fn a_good_node_generates_our_module() {
    let out = std::env::temp_dir().join("drconv-hook-good");
    ModelGen::new()
        .input(&format!(
            "{}/fixtures/attrs.onnx",
            env!("CARGO_MANIFEST_DIR")
        ))
        .register_custom_op(drconv::onnx::DrConv2dOp)
        .out_dir(out.to_str().unwrap())
        .run_from_cli();
    let code = std::fs::read_to_string(out.join("attrs.rs")).unwrap();
    let _ = std::fs::remove_dir_all(&out);
    assert_eq!(
        code.matches(": drconv::burn::DrConv2dFn,").count(),
        4,
        "{code}"
    );
    for config in [
        "(3usize, 4usize, 1usize, 1usize)",
        "(4usize, 6usize, 3usize, 16usize)",
    ] {
        assert!(
            code.contains(&format!("drconv::burn::DrConv2dConfig::new{config}")),
            "{code}"
        );
    }
}
