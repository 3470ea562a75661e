//! Plans split over the batch, the output channels and the output rows so that every tensor a
//! shader binds fits the device's `max_storage_buffer_binding_size` (the full tensors only need
//! `max_buffer_size`: they are copied in and out, never bound).
//!
//! A split plan runs ordinary sub-plans of `nb` samples, `no` output channels and `ny` output rows
//! (one per chunk size: full chunks and remainders) one chunk after another, in one submission:
//! copy the chunk's inputs in, run the sub-plan, copy its results out.
//! [`forward_split`] picks the largest chunks that fit: whole samples while
//! one fits, else one sample (or a few) and the most output channels that fit, else one sample in
//! bands of rows (`rows`: for inputs larger than a binding) with the channels and rows that make
//! the fewest chunks.
//!
//! The output-channel split needs no shader of its own: a DRConv with O outputs is the
//! concatenation over chunks `o0..o0+no` of DRConvs with `no` outputs that share the pool, kernel
//! logits and guide parameters and take conv_kernel.3's rows for those outputs. conv_kernel.3's
//! row `g*I*O + o*I + i` is region g, output o, input i, so a chunk's rows are r contiguous runs
//! (one per region), copied into the sub-layer's own conv_kernel.3 buffers by the program itself
//! (parameters change between calls). Each chunk recomputes the pool, kernel logits, guide and
//! region map: wasted work, but exact, and the region map is the same in every chunk.
//!
//! What a split plan keeps whole: the forward's output, region map and guide; the backward's
//! `grad_output`, `grad.x` and the parameter gradients. Gradients that every chunk contributes to
//! (x, the guide's, conv_kernel.1's) are summed chunk by chunk in a fixed order (deterministic,
//! though not in the unsplit plan's order); each channel chunk's conv_kernel.3 gradient goes to
//! its rows. Every other intermediate (pooled, kernel logits, sigmoid, kernel, corr, the region
//! lists, and their gradients) is the last chunk's: the plan's field holds the last sub-plan's
//! tensor, with that chunk's shape (so does a `forward_trace` of a split plan). The backward
//! recomputes each chunk's forward before its backward (the chunk buffers are reused), so a split
//! training step runs the forward twice.
//!
//! Files: this one the chunks, `copies` the copies between full and chunk tensors, `channels`
//! conv_kernel.3's rows per channel chunk, `rows` the bands of rows and their copies, `pool` the
//! row split's pooled map from the whole image, `forward` and `backward` the two split plans.

mod backward;
mod band;
mod channels;
mod chunks;
mod copies;
mod forward;
mod plan;
mod pool;
mod rows;

pub use backward::{backward, layer_param_grad_buffers};
pub use band::{band, band_shape, Band};
pub use forward::forward;
pub use plan::{
    backward_chunk, backward_split, forward_chunk, forward_split, largest, with_out_channels, Split,
};
