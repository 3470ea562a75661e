//! One error enum for the whole public API: every failure names the value and the limit.

use thiserror::Error;

/// Every error the library reports. Messages name the offending value and the limit it broke.
#[derive(Debug, Error)]
pub enum DrConvError {
    /// A layer hyper-parameter is out of range (zero kernel size, zero regions, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An input tensor does not fit the layer (channels, batch, empty, output size <= 0).
    #[error("shape error: {0}")]
    Shape(String),
    /// A weights file or parameter set is wrong (missing/extra tensor, shape, dtype, truncated).
    #[error("weights error: {0}")]
    Weights(String),
    /// A tensor or dispatch is larger than the device (or the u32 indexing of the shaders) allows.
    #[error("too large: {what} needs {size} but the limit is {limit}")]
    TooLarge { what: String, size: u64, limit: u64 },
    /// No GPU adapter matched the request.
    #[error("no GPU adapter found: {0}")]
    NoAdapter(String),
    /// Requesting a device from the adapter failed.
    #[error("could not create a GPU device: {0}")]
    RequestDevice(String),
    /// The GPU reported an error (validation, out of memory, internal) for an operation.
    #[error("GPU error during {op}: {message}")]
    Gpu { op: String, message: String },
    /// The device was lost; the layer must be rebuilt on a new context.
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    /// Mapping a buffer for readback failed.
    #[error("buffer mapping failed: {0}")]
    Map(String),
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A golden case directory is malformed.
    #[error("case error: {0}")]
    Case(String),
    /// An image could not be decoded or encoded.
    #[error("image error: {0}")]
    Image(String),
}

pub type Result<T, E = DrConvError> = std::result::Result<T, E>;

impl DrConvError {
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        DrConvError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}
