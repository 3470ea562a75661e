//! Generates the burn models from their ONNX files with drconv's hook for `drconv.DRConv2d`:
//! the DRConv detector, its plain-conv twin and the attribute fixture of the tests.
use burn_onnx::{LoadStrategy, ModelGen};

fn main() {
    for onnx in ["detector.onnx", "detector_conv.onnx", "fixtures/attrs.onnx"] {
        println!("cargo:rerun-if-changed={onnx}");
        ModelGen::new()
            .input(onnx)
            .register_custom_op(drconv::onnx::DrConv2dOp)
            .load_strategy(LoadStrategy::Embedded)
            .out_dir("model/")
            .run_from_script();
    }
}
