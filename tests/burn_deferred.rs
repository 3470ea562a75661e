//! The browser's mode of the burn module, forced natively: with deferred errors on (what a
//! WebGPU device registered with drconv gets), our kernels inside burn build their plans and
//! submit without waiting on the GPU, give every golden case's forward and gradients, and an
//! error of earlier work comes back from the next `try_forward` (or from `settle`), never as a
//! panic inside burn's executor. Its own test binary: the mode is per device and process-wide.

mod burn_common;

use burn::tensor::{DType, Tensor};
use burn_common::golden::*;
use burn_common::*;
use drconv::burn::{context, settle, DrConv2dConfig, Path};
use drconv::wgpu;
use drconv::DrConvError;

/// An encoder whose copy reads a buffer without COPY_SRC: invalid at submission.
fn invalid_encoder(device: &wgpu::Device) -> wgpu::CommandEncoder {
    let buffer = |usage| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("deferred burn test"),
            size: 256,
            usage,
            mapped_at_creation: false,
        })
    };
    let src = buffer(wgpu::BufferUsages::STORAGE);
    let dst = buffer(wgpu::BufferUsages::COPY_DST);
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(&src, 0, &dst, 0, 256);
    encoder
}

#[test]
fn deferred_mode_runs_every_golden_case_and_reports_errors_a_call_late() {
    let device = wgpu();
    let ctx = context(&device).expect("registered");
    assert!(!ctx.deferred_errors(), "natively off by default");
    ctx.set_deferred_errors(true);

    let mut failures = Vec::new();
    for case in cases() {
        // A fresh layer each: its plans are built in the deferred mode.
        match run_case(&case, &device, DType::F32, &F32) {
            Ok(line) => println!("deferred {:18} ok, {line}", case.name),
            Err(e) => failures.push(format!("{}: {e}", case.name)),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    pollster::block_on(settle(&device)).expect("no error pending");

    let layer = DrConv2dConfig::new(4, 6, 3, 2)
        .with_padding(1)
        .init(&device);
    assert_eq!(layer.path(&device), Path::Kernels);
    let x = Tensor::<4>::ones([1, 4, 8, 8], &device);
    let want = values(layer.forward(x.clone()));

    // Invalid work submitted on the shared queue: it returns at once, the next call reports it.
    pollster::block_on(ctx.submit_deferred("bad copy", invalid_encoder(ctx.device()))).unwrap();
    match layer.try_forward(x.clone()) {
        Err(DrConvError::Gpu { message, .. }) => {
            assert!(message.contains("bad copy"), "{message}")
        }
        other => panic!("expected the earlier error, got {other:?}"),
    }
    assert_eq!(
        values(layer.forward(x.clone())),
        want,
        "the call after runs"
    );

    // `settle` waits for what is pending and returns it, once.
    pollster::block_on(ctx.submit_deferred("bad copy", invalid_encoder(ctx.device()))).unwrap();
    let e = pollster::block_on(settle(&device)).unwrap_err().to_string();
    assert!(e.contains("bad copy"), "{e}");
    pollster::block_on(settle(&device)).unwrap();
    ctx.set_deferred_errors(false);
}
