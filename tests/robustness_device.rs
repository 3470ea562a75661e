//! Device loss: after `device.destroy()` every call returns an error (DeviceLost, or a GPU or map
//! error), never panics and never hangs. wgpu itself lets calls on a destroyed device "succeed"
//! silently and reports the loss through its lost callback at the next poll; the context polls
//! at every check, so the first call after the loss already fails.

use std::sync::{mpsc, Arc};
use std::time::Duration;

use drconv::{
    DrConv2d, DrConvConfig, DrConvError, DrConvParams, GpuContext, Mode, OptimizerConfig, Tensor,
    Trainer,
};

fn config() -> DrConvConfig {
    DrConvConfig::new(2, 3, 3, 2)
        .unwrap()
        .with_padding(1)
        .unwrap()
}

/// Asserts `r` is a device-lost (or GPU/map) error and returns its message.
fn lost<T>(what: &str, r: drconv::Result<T>) -> String {
    match r {
        Err(e @ (DrConvError::DeviceLost(_) | DrConvError::Gpu { .. } | DrConvError::Map(_))) => {
            format!("{what}: {e}")
        }
        Err(e) => panic!("{what}: expected a device-lost or GPU error, got {e:?}"),
        Ok(_) => panic!("{what}: succeeded on a destroyed device"),
    }
}

/// Runs `f` on its own thread with a fresh context; fails on a panic or after `secs` seconds.
fn guarded<F, Fut>(secs: u64, f: F)
where
    F: FnOnce(Arc<GpuContext>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let out = pollster::block_on(async {
            let ctx = GpuContext::new().await.expect("a GPU adapter");
            f(ctx).await
        });
        let _ = tx.send(out);
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(seen) => {
            seen.iter().for_each(|s| println!("{s}"));
            // Wait for the thread's own teardown (thread-locals, the device's last references):
            // left running, it raced the process's exit handlers and aborted with a double
            // free about one run in thirty.
            worker
                .join()
                .expect("the worker thread ends after sending its result");
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("hung for {secs} s after device loss"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("panicked after device loss"),
    }
}

#[test]
fn forward_calls_after_destroy_are_errors() {
    guarded(120, |ctx| async move {
        let params = DrConvParams::init(config(), 7).unwrap();
        let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
        let x = layer.upload(&Tensor::zeros(&[1, 2, 5, 5])).unwrap();
        layer.forward(&x, Mode::Inference).await.unwrap();
        ctx.poll_wait().unwrap();

        ctx.device().destroy();
        let seen = vec![
            lost("cached plan", layer.forward(&x, Mode::Inference).await),
            lost("new plan", layer.forward(&x, Mode::Training).await),
            lost("readback", layer.params().await),
            lost("new layer", DrConv2d::new(ctx.clone(), &params)),
            lost("upload", layer.upload(&Tensor::zeros(&[1, 2, 5, 5]))),
            lost("poll", ctx.poll_wait()),
        ];
        assert!(ctx.is_lost());
        assert!(
            matches!(ctx.check("after"), Err(DrConvError::DeviceLost(m)) if m.contains("Destroyed")),
            "the loss is reported as DeviceLost naming the reason"
        );
        seen
    });
}

#[test]
fn destroy_with_work_in_flight_then_read_is_an_error() {
    guarded(120, |ctx| async move {
        let params = DrConvParams::init(config(), 8).unwrap();
        let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
        let x = layer.upload(&Tensor::zeros(&[2, 2, 9, 9])).unwrap();
        let y = layer.forward(&x, Mode::Training).await.unwrap();
        ctx.device().destroy(); // no wait: the forward may still be running
        vec![lost("read after destroy", y.read(&ctx).await)]
    });
}

#[test]
fn training_and_backward_after_destroy_are_errors() {
    guarded(120, |ctx| async move {
        let params = DrConvParams::init(config(), 9).unwrap();
        let mut trainer = Trainer::new(ctx.clone(), &params, OptimizerConfig::adam(1e-3))
            .await
            .unwrap();
        let x = ctx.upload("x", &Tensor::zeros(&[1, 2, 5, 5])).unwrap();
        let t = ctx.upload("t", &Tensor::zeros(&[1, 3, 5, 5])).unwrap();
        trainer.step(&x, &t, true).await.unwrap();

        ctx.device().destroy();
        let mut seen = vec![lost("train step", trainer.step(&x, &t, false).await)];
        let gy = t.clone();
        seen.push(lost(
            "backward",
            trainer.layer_mut().backward(&x, &gy).await,
        ));
        seen.push(lost(
            "new trainer",
            Trainer::new(ctx.clone(), &params, OptimizerConfig::sgd(0.1)).await,
        ));
        seen
    });
}
