//! Plain-Rust CPU reference of DRConv2d (forward, backward, training). The oracle of the tests.

pub mod backward;
pub mod forward;
pub mod train;

pub use backward::backward;
pub use forward::{argmax_first, correlation, forward};
pub use train::{mse_loss, train_step};
