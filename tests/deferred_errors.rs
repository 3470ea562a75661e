//! Deferred error reporting (`GpuContext::set_deferred_errors`), forced natively: a submission
//! whose commands are invalid returns at once, and its error comes back from the next call on
//! the context, naming the submission (what the web and burn's executor see, where nothing may
//! wait for an error scope); with the mode off the submission itself fails, as always.

use drconv::{DrConv2d, DrConvConfig, DrConvError, DrConvParams, GpuContext, Mode, Tensor};

/// An encoder whose copy reads a buffer without COPY_SRC: invalid at submission.
fn invalid_encoder(ctx: &GpuContext) -> drconv::wgpu::CommandEncoder {
    use drconv::wgpu;
    let buffer = |usage| {
        ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("deferred test"),
            size: 256,
            usage,
            mapped_at_creation: false,
        })
    };
    let src = buffer(wgpu::BufferUsages::STORAGE);
    let dst = buffer(wgpu::BufferUsages::COPY_DST);
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(&src, 0, &dst, 0, 256);
    encoder
}

fn gpu_message(r: drconv::Result<impl std::fmt::Debug>, op: &str) -> String {
    match r {
        Err(DrConvError::Gpu { op: at, message }) => {
            assert_eq!(at, op, "{message}");
            message
        }
        other => panic!("expected a GPU error at {op}, got {other:?}"),
    }
}

#[test]
fn a_deferred_error_is_returned_by_the_next_call() {
    pollster::block_on(async {
        let ctx = GpuContext::new()
            .await
            .expect("an adapter (lavapipe on CI)");
        let config = DrConvConfig::new(4, 4, 3, 2)
            .unwrap()
            .with_padding(1)
            .unwrap();
        let mut layer =
            DrConv2d::new(ctx.clone(), &DrConvParams::init(config, 1).unwrap()).unwrap();
        let x = layer
            .upload(&Tensor::new(&[1, 4, 6, 6], vec![0.5; 144]).unwrap())
            .unwrap();

        // Off (the native default): the submission itself fails.
        assert!(!ctx.deferred_errors());
        gpu_message(
            ctx.submit_deferred("bad copy", invalid_encoder(&ctx)).await,
            "bad copy",
        );

        // On: the submission returns, the next call on the context returns its error, once.
        ctx.set_deferred_errors(true);
        ctx.submit_deferred("bad copy", invalid_encoder(&ctx))
            .await
            .unwrap();
        let m = gpu_message(ctx.check("next call"), "next call");
        assert!(m.contains("earlier call (bad copy)"), "{m}");
        ctx.check("after").unwrap();

        // A layer's forward is such a next call; the one after it runs.
        ctx.submit_deferred("bad copy", invalid_encoder(&ctx))
            .await
            .unwrap();
        let r = layer.forward(&x, Mode::Inference).await;
        assert!(
            matches!(r, Err(DrConvError::Gpu { ref message, .. }) if message.contains("bad copy")),
            "{r:?}"
        );
        layer.forward(&x, Mode::Inference).await.unwrap();

        // `settle` waits for every pending scope (the web's `check().await`).
        ctx.submit_deferred("bad copy", invalid_encoder(&ctx))
            .await
            .unwrap();
        let m = gpu_message(ctx.settle("settle").await, "settle");
        assert!(m.contains("bad copy"), "{m}");
        ctx.settle("settled").await.unwrap();
    });
}
