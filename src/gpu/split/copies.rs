//! Buffer copies between a split plan's full tensors and its chunks' tensors.

use super::chunks::Chunk;
use crate::gpu::buffers::GpuTensor;
use crate::gpu::program::Step;

/// Which way a copy between a full tensor and a chunk's goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dir {
    /// Full tensor -> chunk.
    In,
    /// Chunk -> full tensor.
    Out,
}

/// The copy of `size` bytes between byte `at` of `full` and byte `chunk_at` of `chunk`.
pub(super) fn copy(
    label: &'static str,
    full: &GpuTensor,
    at: u64,
    chunk: &GpuTensor,
    chunk_at: u64,
    size: u64,
    dir: Dir,
) -> Step {
    match dir {
        Dir::In => Step::copy(label, &full.buffer, at, &chunk.buffer, chunk_at, size),
        Dir::Out => Step::copy(label, &chunk.buffer, chunk_at, &full.buffer, at, size),
    }
}

/// Copies between a chunk's tensor (`nb x no x rest`) and samples `b0..`, channels `o0..` of the
/// full `B x O x rest` tensor: one copy per sample, or one in all when the chunk has every
/// channel.
pub(super) fn slices(
    label: &'static str,
    full: &GpuTensor,
    chunk: &GpuTensor,
    ch: &Chunk,
    dir: Dir,
) -> Vec<Step> {
    let o = full.shape[1];
    let plane = full.shape[2..].iter().product::<usize>() as u64 * 4;
    let (nb, no) = (ch.nb as u64, chunk.shape[1] as u64);
    let pieces: Vec<(u64, u64, u64)> = if no == o as u64 {
        vec![(ch.b0 as u64 * no * plane, 0, nb * no * plane)]
    } else {
        (0..nb)
            .map(|j| {
                let at = ((ch.b0 as u64 + j) * o as u64 + ch.o0 as u64) * plane;
                (at, j * no * plane, no * plane)
            })
            .collect()
    };
    pieces
        .into_iter()
        .map(|(at, chunk_at, size)| copy(label, full, at, chunk, chunk_at, size, dir))
        .collect()
}

/// Copies of the samples of a chunk for tensors with no channel axis to split (input, region
/// map, guide, grad.x): samples `b0..b0+nb` of `full` and all of `chunk`.
pub(super) fn samples(
    label: &'static str,
    full: &GpuTensor,
    chunk: &GpuTensor,
    ch: &Chunk,
    dir: Dir,
) -> Step {
    let sample = full.shape[1..].iter().product::<usize>() as u64 * 4;
    let (at, size) = (ch.b0 as u64 * sample, ch.nb as u64 * sample);
    copy(label, full, at, chunk, 0, size, dir)
}

/// The copy of all of `src` to the start of `dst`: the first contribution to a sum.
pub(super) fn whole(label: &'static str, src: &GpuTensor, dst: &GpuTensor) -> Step {
    Step::copy(
        label,
        &src.buffer,
        0,
        &dst.buffer,
        0,
        src.numel() as u64 * 4,
    )
}
