//! Plans split over the batch, the output channels and the output rows so that every tensor a
//! shader binds fits the device's `max_storage_buffer_binding_size` (the full tensors only need
//! `max_buffer_size`: they are copied in and out, never bound).
//!
//! A split plan runs ordinary sub-plans of `nb` samples, `no` output channels and `ny` output rows
//! (one per chunk size: full chunks and remainders) one chunk after another, in one submission:
//! copy the chunk's inputs in, run the sub-plan, copy its results out.
//! [`crate::gpu::limits::forward_split`] picks the largest chunks that fit: whole samples while
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
mod channels;
mod copies;
mod forward;
mod pool;
mod rows;

pub use backward::{backward, layer_param_grad_buffers, SplitBackward};
pub use forward::forward;
pub use rows::{band, band_shape, Band};

use crate::config::{DrConvConfig, ForwardShape};
use crate::error::Result;
use crate::gpu::limits::Split;

/// Samples `b0..b0+nb`, output channels `o0..o0+no` and output rows `y0..y0+ny` of a split plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunk {
    b0: usize,
    nb: usize,
    o0: usize,
    no: usize,
    y0: usize,
    ny: usize,
}

/// A chunk's size `(nb, no, ny)`: chunks of one size share a sub-plan.
type Size = (usize, usize, usize);

impl Chunk {
    fn size(&self) -> Size {
        (self.nb, self.no, self.ny)
    }
}

/// `(start, len)` of the chunks of `n` items, `size` at a time.
fn spans(n: usize, size: usize) -> impl Iterator<Item = (usize, usize)> + Clone {
    (0..n).step_by(size).map(move |s| (s, size.min(n - s)))
}

/// Every chunk of `split`, channel chunks outer when `channels_outer` (the forward: each chunk's
/// conv_kernel.3 rows are copied once), else batch chunks outer, then row bands (the backward: a
/// band's `grad.x` is summed over the channel chunks before the next band or batch chunk).
fn chunks(split: Split, s: &ForwardShape, c: &DrConvConfig, channels_outer: bool) -> Vec<Chunk> {
    let (bs, os, ys) = (
        spans(s.batch, split.batch),
        spans(c.out_channels, split.channels),
        spans(s.out_height, split.rows),
    );
    let mut v = Vec::new();
    for (b0, nb) in bs {
        for (y0, ny) in ys.clone() {
            v.extend(os.clone().map(|(o0, no)| Chunk {
                b0,
                nb,
                o0,
                no,
                y0,
                ny,
            }));
        }
    }
    if channels_outer {
        v.sort_by_key(|ch| ch.o0);
    }
    v
}

/// The size of the last of `all`: its sub-plan's intermediates stand for the split plan's.
fn last_size(all: &[Chunk]) -> Size {
    all[all.len() - 1].size()
}

/// One value per distinct key (a chunk size), in order of first use.
struct PerSize<K, T> {
    items: Vec<(K, T)>,
}

impl<K: PartialEq + Copy, T> PerSize<K, T> {
    fn build(
        keys: impl IntoIterator<Item = K>,
        mut make: impl FnMut(K) -> Result<T>,
    ) -> Result<Self> {
        let mut items: Vec<(K, T)> = Vec::new();
        for k in keys {
            if !items.iter().any(|(have, _)| *have == k) {
                let v = make(k)?;
                items.push((k, v));
            }
        }
        Ok(PerSize { items })
    }

    fn get(&self, k: K) -> &T {
        &self
            .items
            .iter()
            .find(|(have, _)| *have == k)
            .expect("built for every chunk")
            .1
    }

    fn take(mut self, k: K) -> T {
        let pos = self.items.iter().position(|(have, _)| *have == k);
        self.items
            .swap_remove(pos.expect("built for every chunk"))
            .1
    }
}
