//! Work that does not wait for its error scopes (submissions, and the buffers and pipelines of
//! new plans): where a caller must not block (inside burn's executor, and on the web, where
//! popping an error scope is a JavaScript promise that a blocked thread never sees settle). The
//! scopes' futures are kept on the context and polled without blocking at every later check;
//! an error they report comes back from the next call on the context (or from
//! [`GpuContext::settle`]), one call late. Natively the futures are ready at once, so forcing
//! the mode there tests what the web does.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};

use crate::error::{DrConvError, Result};
use crate::gpu::context::{GpuContext, Pending};

impl GpuContext {
    /// Whether work in error scopes (submissions, and the buffers and pipelines of new plans)
    /// leaves its errors to a later call instead of waiting (off by default natively; on for
    /// burn's WebGPU devices registered with drconv).
    pub fn set_deferred_errors(&self, on: bool) {
        self.deferred.store(on, Ordering::Relaxed);
    }

    /// See [`GpuContext::set_deferred_errors`].
    pub fn deferred_errors(&self) -> bool {
        self.deferred.load(Ordering::Relaxed)
    }

    /// [`GpuContext::submit`], naming `op` in its errors: with deferred errors on, it returns
    /// without waiting for the error scopes, and an error they report (or one recorded
    /// earlier) is returned by the next call that checks the context; off, it waits, and an
    /// error recorded earlier is returned first.
    pub async fn submit_deferred(&self, op: &str, encoder: wgpu::CommandEncoder) -> Result<()> {
        self.scoped(op, || self.queue.submit(Some(encoder.finish())))
            .await
            .map(|_| ())
    }

    /// Keeps `scopes` (of work `op` just did) pending on the context instead of waiting for them.
    pub(crate) fn defer(&self, op: &str, scopes: [wgpu::ErrorScopeGuard; 2]) {
        let scopes = scopes.map(|s| Pending::new(s.pop()));
        if let Ok(mut p) = self.pending.lock() {
            p.extend(scopes.into_iter().map(|s| (op.to_string(), s)));
        }
        self.settle_ready();
    }

    /// Waits for every deferred error scope, then checks the context: the web's explicit
    /// `check().await`.
    pub async fn settle(&self, op: &str) -> Result<()> {
        let pending: Vec<_> = match self.pending.lock() {
            Ok(mut p) => p.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for (at, scope) in pending {
            if let Some(e) = scope.await {
                self.record_error(format!("in an earlier call ({at}): {e}"));
            }
        }
        self.check(op)
    }

    /// Polls the deferred scopes once, without blocking, and records the errors of those done.
    pub(crate) fn settle_ready(&self) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        let mut cx = Context::from_waker(Waker::noop());
        let mut errors = Vec::new();
        pending.retain_mut(|(at, scope)| match Pin::new(scope).poll(&mut cx) {
            Poll::Ready(e) => {
                errors.extend(e.map(|e| format!("in an earlier call ({at}): {e}")));
                false
            }
            Poll::Pending => true,
        });
        drop(pending);
        for e in errors {
            self.record_error(e);
        }
    }
}

/// The output of `fut`, polled once: for callers that must not block (burn's executor), running
/// async code that has nothing to wait for (natively wgpu's error scopes are ready at once; with
/// deferred errors on nothing waits for them). An error, never a hang, if it would wait.
#[cfg_attr(not(feature = "burn"), allow(dead_code))]
pub(crate) fn without_waiting<F: Future>(op: &str, fut: F) -> Result<F::Output> {
    match pin!(fut).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => Ok(out),
        Poll::Pending => Err(DrConvError::Gpu {
            op: op.into(),
            message: "it would wait on the GPU, which nothing may do inside burn's executor \
                      (turn deferred errors on: GpuContext::set_deferred_errors)"
                .into(),
        }),
    }
}
