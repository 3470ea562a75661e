//! CPU training: MSE loss and one optimizer step (forward, loss, backward, update).

use crate::cpu::{backward, forward};
use crate::error::{DrConvError, Result};
use crate::optim::OptimizerState;
use crate::params::DrConvParams;
use crate::tensor::Tensor;

/// `mean((y - t)^2)` and its gradient `2 (y - t) / N`. Accumulates the loss in f64.
pub fn mse_loss(y: &Tensor, target: &Tensor) -> Result<(f32, Tensor)> {
    if y.shape != target.shape || y.data.len() != target.data.len() {
        return Err(DrConvError::Shape(format!(
            "MSE target has shape {:?} but the output has shape {:?}",
            target.shape, y.shape
        )));
    }
    if y.data.is_empty() {
        return Err(DrConvError::Shape(
            "MSE of an empty tensor is undefined".into(),
        ));
    }
    let n = y.data.len() as f64;
    let mut sum = 0.0f64;
    let mut grad = Vec::with_capacity(y.data.len());
    for (&a, &b) in y.data.iter().zip(&target.data) {
        let d = a as f64 - b as f64;
        sum += d * d;
        grad.push((2.0 * d / n) as f32);
    }
    Ok((
        (sum / n) as f32,
        Tensor {
            shape: y.shape.clone(),
            data: grad,
        },
    ))
}

/// One training step on the CPU: forward, MSE against `target`, backward, optimizer update.
/// Returns the loss before the update.
pub fn train_step(
    params: &mut DrConvParams,
    state: &mut OptimizerState,
    x: &Tensor,
    target: &Tensor,
) -> Result<f32> {
    let trace = forward(params, x)?;
    let (loss, grad_output) = mse_loss(&trace.output, target)?;
    let grads = backward(params, x, &trace, &grad_output)?;
    state.step(params, &grads)?;
    Ok(loss)
}
