//! The output-channel split's parameters: each channel chunk's sub-layer takes conv_kernel.3's
//! rows for its outputs (copied in by the program, parameters change between calls) and shares
//! every other parameter buffer with the layer.

use super::chunks::{Chunk, PerSize};
use super::copies::{copy, Dir};
use super::plan::with_out_channels;
use crate::config::DrConvConfig;
use crate::error::Result;
use crate::gpu::buffers::GpuTensor;
use crate::gpu::context::GpuContext;
use crate::gpu::params::GpuParams;
use crate::gpu::program::Step;
use crate::params::ParamId;

/// The parameters split over output channels, weight then bias (the order of every
/// `[&GpuTensor; 2]` here).
pub(super) const KERNEL3: [ParamId; 2] = [ParamId::KernelW3, ParamId::KernelB3];

/// conv_kernel.3's weight and bias (or their gradients) of six parameter tensors.
pub(super) fn kernel3_of(tensors: &[GpuTensor; 6]) -> [&GpuTensor; 2] {
    KERNEL3.map(|id| &tensors[id.index()])
}

/// Copies of conv_kernel.3's rows (weight and bias, or their gradients) for output channels
/// `o0..o0+no` between the full layer's tensors and a channel chunk's: per region g, full rows
/// `g*I*O + o0*I ..` are chunk rows `g*I*no ..`, `no*I` of them.
pub(super) fn kernel3_rows(
    label: &'static str,
    c: &DrConvConfig,
    full: [&GpuTensor; 2],
    chunk: [&GpuTensor; 2],
    (o0, no): (usize, usize),
    dir: Dir,
) -> Vec<Step> {
    let (i, o) = (c.in_channels as u64, c.out_channels as u64);
    let (o0, no) = (o0 as u64, no as u64);
    let mut steps = Vec::new();
    for ((id, full), chunk) in KERNEL3.into_iter().zip(full).zip(chunk) {
        let row = match id {
            ParamId::KernelW3 => c.region_num as u64 * 4,
            _ => 4,
        };
        steps.extend((0..c.region_num as u64).map(|g| {
            let at = (g * i * o + o0 * i) * row;
            let chunk_at = g * i * no * row;
            copy(label, full, at, chunk, chunk_at, no * i * row, dir)
        }));
    }
    steps
}

/// The parameter gradients every chunk contributes to whole (same shape as the layer's): all six
/// without a channel split, else all but conv_kernel.3's.
pub(super) fn shared_grads(channel_split: bool) -> impl Iterator<Item = ParamId> {
    ParamId::ALL
        .into_iter()
        .filter(move |id| !(channel_split && KERNEL3.contains(id)))
}

/// The parameters of the sub-layer of every channel chunk size, and which channel chunk's
/// conv_kernel.3 rows each holds.
pub(super) struct SubParams<'a> {
    c: &'a DrConvConfig,
    full: &'a GpuParams,
    per_size: PerSize<usize, GpuParams>,
    /// `(no, o0)`: the sub-layer with `no` channels holds rows `o0..`, so the forward (channel
    /// chunks outer) copies them once per channel chunk.
    loaded: Vec<(usize, usize)>,
}

impl<'a> SubParams<'a> {
    /// The sub-layers of the channel chunk sizes of `all`: the layer's own parameters when a
    /// chunk has every channel, else the layer's buffers for what every chunk shares and new ones
    /// for conv_kernel.3 (filled by [`SubParams::load`] before each chunk that uses them).
    pub(super) fn build(
        ctx: &GpuContext,
        c: &'a DrConvConfig,
        full: &'a GpuParams,
        all: &[Chunk],
    ) -> Result<Self> {
        let per_size = PerSize::build(all.iter().map(|ch| ch.no), |no| {
            if no == c.out_channels {
                return Ok(full.clone());
            }
            let sub = with_out_channels(c, no);
            let mut tensors = full.tensors.clone();
            for id in KERNEL3 {
                tensors[id.index()] = ctx.empty(id.name(), &sub.param_shape(id))?;
            }
            Ok(GpuParams { tensors })
        })?;
        Ok(SubParams {
            c,
            full,
            per_size,
            loaded: Vec::new(),
        })
    }

    /// The parameters of the sub-layer with `no` output channels.
    pub(super) fn get(&self, no: usize) -> &GpuParams {
        self.per_size.get(no)
    }

    /// The copies that put chunk `ch`'s rows into its sub-layer's buffers, unless they hold them.
    pub(super) fn load(&mut self, ch: &Chunk) -> Vec<Step> {
        if ch.no == self.c.out_channels {
            return Vec::new();
        }
        match self.loaded.iter_mut().find(|(no, _)| *no == ch.no) {
            Some((_, o0)) if *o0 == ch.o0 => return Vec::new(),
            Some((_, o0)) => *o0 = ch.o0,
            None => self.loaded.push((ch.no, ch.o0)),
        }
        let sub = self.per_size.get(ch.no);
        kernel3_rows(
            "conv_kernel.3 rows in",
            self.c,
            kernel3_of(&self.full.tensors),
            kernel3_of(&sub.tensors),
            (ch.o0, ch.no),
            Dir::In,
        )
    }
}
