//! One error enum for the whole public API: every failure names the value and the limit.

use thiserror::Error;

/// Every error the library reports. Messages name the offending value and the limit it broke.
#[derive(Debug, Error)]
#[non_exhaustive]
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
    TooLarge {
        /// The tensor, dispatch or count that is too large.
        what: String,
        /// How large it is (bytes, elements or workgroups, as `what` says).
        size: u64,
        /// The device's or the shaders' limit for it.
        limit: u64,
    },
    /// A tensor of another device (another `GpuContext`, or a buffer viewed through the wrong one)
    /// was passed to a layer.
    #[error("foreign tensor: {0}")]
    ForeignTensor(String),
    /// A view of a caller's buffer breaks a rule: offset alignment, size, or buffer usage.
    #[error("buffer view: {0}")]
    View(String),
    /// No GPU adapter matched the request.
    #[error("no GPU adapter found: {0}")]
    NoAdapter(String),
    /// Requesting a device from the adapter failed.
    #[error("could not create a GPU device: {0}")]
    RequestDevice(String),
    /// The GPU reported an error (validation, out of memory, internal) for an operation.
    #[error("GPU error during {op}: {message}")]
    Gpu {
        /// What drconv was doing.
        op: String,
        /// wgpu's message.
        message: String,
    },
    /// The device was lost; the layer must be rebuilt on a new context.
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    /// Mapping a buffer for readback failed.
    #[error("buffer mapping failed: {0}")]
    Map(String),
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's error.
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

/// `Result` with [`DrConvError`] as the error.
pub type Result<T, E = DrConvError> = std::result::Result<T, E>;

impl DrConvError {
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        DrConvError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}
