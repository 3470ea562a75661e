//! The chunks of a split plan and the sub-plans per chunk size.

use super::plan::Split;
use crate::config::{DrConvConfig, ForwardShape};
use crate::error::Result;

/// Samples `b0..b0+nb`, output channels `o0..o0+no` and output rows `y0..y0+ny` of a split plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Chunk {
    pub(super) b0: usize,
    pub(super) nb: usize,
    pub(super) o0: usize,
    pub(super) no: usize,
    pub(super) y0: usize,
    pub(super) ny: usize,
}

/// A chunk's size `(nb, no, ny)`: chunks of one size share a sub-plan.
pub(super) type Size = (usize, usize, usize);

impl Chunk {
    pub(super) fn size(&self) -> Size {
        (self.nb, self.no, self.ny)
    }
}

/// `(start, len)` of the chunks of `n` items, `size` at a time.
pub(super) fn spans(n: usize, size: usize) -> impl Iterator<Item = (usize, usize)> + Clone {
    (0..n).step_by(size).map(move |s| (s, size.min(n - s)))
}

/// Every chunk of `split`, channel chunks outer when `channels_outer` (the forward: each chunk's
/// conv_kernel.3 rows are copied once), else batch chunks outer, then row bands (the backward: a
/// band's `grad.x` is summed over the channel chunks before the next band or batch chunk).
pub(super) fn chunks(
    split: Split,
    s: &ForwardShape,
    c: &DrConvConfig,
    channels_outer: bool,
) -> Vec<Chunk> {
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
pub(super) fn last_size(all: &[Chunk]) -> Size {
    all[all.len() - 1].size()
}

/// One value per distinct key (a chunk size), in order of first use.
pub(super) struct PerSize<K, T> {
    pub(super) items: Vec<(K, T)>,
}

impl<K: PartialEq + Copy, T> PerSize<K, T> {
    pub(super) fn build(
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

    pub(super) fn get(&self, k: K) -> &T {
        &self
            .items
            .iter()
            .find(|(have, _)| *have == k)
            .expect("built for every chunk")
            .1
    }

    pub(super) fn take(mut self, k: K) -> T {
        let pos = self.items.iter().position(|(have, _)| *have == k);
        self.items
            .swap_remove(pos.expect("built for every chunk"))
            .1
    }
}
