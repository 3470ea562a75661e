//! Submissions that do not wait for their error scopes: where a caller must not block (inside
//! burn's executor, and on the web, where popping an error scope is a JavaScript promise that
//! a blocked thread never sees settle). The scopes' futures are kept on the context and polled
//! without blocking at every later check; an error they report comes back from the next call on
//! the context (or from [`GpuContext::settle`]), one call late. Natively the futures are ready
//! at once, so forcing the mode there tests what the web does.

use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};

use crate::error::Result;
use crate::gpu::context::{GpuContext, Pending};

impl GpuContext {
    /// Whether submissions through [`GpuContext::submit_deferred`] leave their errors to a later
    /// call instead of waiting (off by default natively).
    pub fn set_deferred_errors(&self, on: bool) {
        self.deferred.store(on, Ordering::Relaxed);
    }

    /// See [`GpuContext::set_deferred_errors`].
    pub fn deferred_errors(&self) -> bool {
        self.deferred.load(Ordering::Relaxed)
    }

    /// Submits `encoder` inside out-of-memory and validation error scopes. With deferred errors
    /// on, it returns without waiting for the scopes: an error they report is returned by the
    /// next call that checks the context (naming `op`); off, it waits, as `submit` does. Either
    /// way an error recorded earlier is returned first.
    pub async fn submit_deferred(&self, op: &str, encoder: wgpu::CommandEncoder) -> Result<()> {
        if !self.deferred_errors() {
            return self.submit(encoder).await;
        }
        self.check(op)?;
        let (_, scopes) = self.in_scopes(|| self.queue.submit(Some(encoder.finish())));
        let scopes = scopes.map(|s| -> Pending { Box::pin(s.pop()) });
        if let Ok(mut p) = self.pending.lock() {
            p.extend(scopes.into_iter().map(|s| (op.to_string(), s)));
        }
        self.settle_ready();
        Ok(())
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
                self.record_error(format!("in an earlier submission ({at}): {e}"));
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
        pending.retain_mut(|(at, scope)| match scope.as_mut().poll(&mut cx) {
            Poll::Ready(e) => {
                errors.extend(e.map(|e| format!("in an earlier submission ({at}): {e}")));
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
