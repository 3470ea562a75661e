//! A plain host tensor: shape + row-major f32 data (the golden-file layout).

use crate::error::{DrConvError, Result};

/// Host-side f32 tensor, C-contiguous, last dimension fastest.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions, outermost first (NCHW for images).
    pub shape: Vec<usize>,
    /// Values in row-major order.
    pub data: Vec<f32>,
}

impl Tensor {
    /// Build a tensor, checking that `data` has exactly `shape.iter().product()` elements.
    pub fn new(shape: &[usize], data: Vec<f32>) -> Result<Self> {
        let n = numel(shape);
        if n != data.len() {
            return Err(DrConvError::Shape(format!(
                "tensor of shape {shape:?} needs {n} values, got {}",
                data.len()
            )));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            data,
        })
    }

    /// Zeros of this shape.
    pub fn zeros(shape: &[usize]) -> Self {
        Tensor {
            shape: shape.to_vec(),
            data: vec![0.0; numel(shape)],
        }
    }

    /// The number of values.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// Standard-normal values from the crate's seeded PRNG (reproducible test and demo inputs).
    pub fn randn(shape: &[usize], seed: u64) -> Self {
        Tensor {
            shape: shape.to_vec(),
            data: crate::rng::Rng::new(seed).normal_vec(numel(shape)),
        }
    }
}

/// Number of elements of a shape (1 for a scalar shape `[]`).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

#[cfg(feature = "golden")]
/// Elementwise `|a - b| <= atol + rtol * |b|` check; returns (max_abs_err, all_ok).
/// NaN anywhere counts as a failure unless both sides are NaN at that index.
pub fn compare(a: &[f32], b: &[f32], atol: f64, rtol: f64) -> (f64, bool) {
    if a.len() != b.len() {
        return (f64::INFINITY, false);
    }
    let mut worst = 0.0f64;
    let mut ok = true;
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        if x.is_nan() && y.is_nan() {
            continue;
        }
        let err = (x - y).abs();
        if err.is_nan() || err > atol + rtol * y.abs() {
            ok = false;
        }
        if err.is_nan() {
            worst = f64::INFINITY;
        } else if err > worst {
            worst = err;
        }
    }
    (worst, ok)
}
