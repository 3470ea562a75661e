//! The split decision: how many samples, output channels and output rows each sub-plan takes
//! so that every tensor a shader binds fits the device (see the parent module). Made once, by
//! `crate::gpu::plan`, before any builder runs.

use super::band::band_shape;
use crate::config::{DrConvConfig, ForwardShape, Mode};
use crate::error::{DrConvError, Result};
use crate::gpu::limits::{check_backward, check_bound, check_forward, check_stored, TensorSpec};

/// How a plan is split to fit the device: samples, output channels and output rows per sub-plan
/// (see `crate::gpu::split`). The whole batch, every channel and every row is no split; rows are
/// split only with one sample per sub-plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub batch: usize,
    pub channels: usize,
    pub rows: usize,
}

impl Split {
    /// Whether the plan runs as sub-plans at all.
    pub fn splits(&self, c: &DrConvConfig, s: &ForwardShape) -> bool {
        self.batch < s.batch || self.channels < c.out_channels || self.splits_rows(s)
    }

    /// Whether sub-plans take bands of output rows (`crate::gpu::split::rows`).
    pub fn splits_rows(&self, s: &ForwardShape) -> bool {
        self.rows < s.out_height
    }
}

/// The layer restricted to `out_channels` outputs: an output-channel chunk's sub-layer (same
/// pool, kernel logits and guide; its rows of conv_kernel.3).
pub fn with_out_channels(c: &DrConvConfig, out_channels: usize) -> DrConvConfig {
    DrConvConfig { out_channels, ..*c }
}

/// The split of a forward of `shape`: the whole batch and every channel when every tensor fits
/// the device; else the most samples per sub-plan whose tensors all fit; else, when one sample
/// is already too large, one sample and the most output channels that fit (then the most samples
/// with those channels); else, when one sample is too large even with one output channel, one
/// sample and the channels and output rows per sub-plan that make the fewest sub-plans. Refuses,
/// naming the tensor and the limit, when even one output row of one channel of one sample does
/// not fit, or when a full tensor the split plan keeps (input, output, region map, guide; the
/// pooled map and one input row for a row split) exceeds its limit.
pub fn forward_split(
    limits: &wgpu::Limits,
    c: &DrConvConfig,
    s: &ForwardShape,
    mode: Mode,
) -> Result<Split> {
    let split = largest_split(c, s, |c, sub| check_forward(limits, c, sub, mode))?;
    if split.splits(c, s) {
        for t in [
            TensorSpec::new("input", &s.input(c)),
            TensorSpec::new("output", &s.output(c)),
            TensorSpec::new("region_index", &s.region()),
            TensorSpec::new("guide", &s.guide(c)),
        ] {
            check_stored(limits, &t)?;
        }
    }
    if split.splits_rows(s) {
        check_stored(limits, &TensorSpec::new("pooled", &s.pooled(c)))?;
        let row = [1, 1, 1, s.width];
        check_bound(limits, &TensorSpec::new("one input row, to pool", &row))?;
    }
    Ok(split)
}

/// The split of a backward (with its training forward) of `shape`, as [`forward_split`]; a split
/// backward keeps full `grad_output` and `grad.x`.
pub fn backward_split(limits: &wgpu::Limits, c: &DrConvConfig, s: &ForwardShape) -> Result<Split> {
    let split = largest_split(c, s, |c, sub| check_backward(limits, c, sub))?;
    if split.splits(c, s) {
        if split.splits_rows(s) {
            check_stored(limits, &TensorSpec::new("grad.pooled", &s.pooled(c)))?;
        }
        forward_split(limits, c, s, Mode::Training)?;
        for t in [
            TensorSpec::new("grad_output", &s.output(c)),
            TensorSpec::new("grad.x", &s.input(c)),
        ] {
            check_stored(limits, &t)?;
        }
    }
    Ok(split)
}

/// Samples per sub-plan of a forward of `shape` ([`forward_split`]'s batch).
pub fn forward_chunk(
    limits: &wgpu::Limits,
    c: &DrConvConfig,
    s: &ForwardShape,
    mode: Mode,
) -> Result<usize> {
    Ok(forward_split(limits, c, s, mode)?.batch)
}

/// Samples per sub-plan of a backward of `shape` ([`backward_split`]'s batch).
pub fn backward_chunk(limits: &wgpu::Limits, c: &DrConvConfig, s: &ForwardShape) -> Result<usize> {
    Ok(backward_split(limits, c, s)?.batch)
}

/// The split `check` accepts with the most work per sub-plan: over the batch while one sample
/// fits, else over output channels with one sample, then the most samples at those channels;
/// else bands of output rows of one sample (`crate::gpu::split::rows`). Every size checked grows
/// with the batch, the output channels and the rows per band (or does not depend on them), so
/// acceptance is monotone in each and a binary search finds the largest.
fn largest_split(
    c: &DrConvConfig,
    s: &ForwardShape,
    check: impl Fn(&DrConvConfig, &ForwardShape) -> Result<()>,
) -> Result<Split> {
    let with = |batch: usize| ForwardShape { batch, ..*s };
    let one = with(1);
    if s.batch == 0 || check(c, &one).is_ok() {
        let batch = largest(s.batch, |b| check(c, &with(b)).is_ok());
        return Ok(Split {
            batch,
            channels: c.out_channels,
            rows: s.out_height,
        });
    }
    let sub = |o: usize| with_out_channels(c, o);
    let rows = s.out_height;
    if check(&sub(1), &one).is_ok() {
        let channels = largest(c.out_channels - 1, |o| check(&sub(o), &one).is_ok());
        let batch = largest(s.batch, |b| check(&sub(channels), &with(b)).is_ok());
        return Ok(Split {
            batch,
            channels,
            rows,
        });
    }
    // Bands of output rows (one sample each): the most channels with one row, then the most rows.
    let band = |ny: usize| band_shape(c, s, ny);
    let fits = check(&sub(1), &band(1));
    let fits = if rows > 1 { fits } else { check(&sub(1), &one) };
    fits.map_err(|e| match e {
        DrConvError::TooLarge { what, size, limit } => DrConvError::TooLarge {
            what: format!(
                "{what}, even with one sample, one output channel and one output row per \
                 sub-plan (plans split work over the batch, the output channels and the output \
                 rows, not over input channels)"
            ),
            size,
            limit,
        },
        other => other,
    })?;
    // Of the channel counts that fit with one row, the one with the fewest chunks (channel
    // chunks times bands, each band as tall as fits), the most channels on ties.
    let most = largest(c.out_channels, |o| check(&sub(o), &band(1)).is_ok());
    let split = |channels: usize| Split {
        batch: 1,
        channels,
        rows: largest(rows - 1, |ny| check(&sub(channels), &band(ny)).is_ok()),
    };
    let count = |t: &Split| c.out_channels.div_ceil(t.channels) * s.out_height.div_ceil(t.rows);
    let best = (1..=most).rev().map(split).min_by_key(count);
    Ok(best.expect("one channel fits"))
}

/// The largest n in `1..=max` with `ok(n)`, given `ok(1)` and `ok` monotone (`max` when 0).
pub fn largest(max: usize, ok: impl Fn(usize) -> bool) -> usize {
    if max <= 1 || ok(max) {
        return max;
    }
    let (mut lo, mut hi) = (1, max - 1);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if ok(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(binding: u64) -> wgpu::Limits {
        wgpu::Limits {
            max_storage_buffer_binding_size: binding,
            ..wgpu::Limits::default()
        }
    }

    fn layer(i: usize, o: usize, r: usize, input: [usize; 4]) -> (DrConvConfig, ForwardShape) {
        let c = DrConvConfig::new(i, o, 3, r)
            .unwrap()
            .with_padding(1)
            .unwrap();
        let s = c.forward_shape(&input).unwrap();
        (c, s)
    }

    #[test]
    fn largest_finds_the_last_accepted_size() {
        for max in [1, 2, 7, 64, 1000] {
            for limit in 1..=max {
                assert_eq!(largest(max, |n| n <= limit), limit);
            }
        }
        assert_eq!(largest(0, |_| false), 0);
    }

    #[test]
    fn a_shape_that_fits_is_not_split() {
        let (c, s) = layer(8, 8, 4, [4, 8, 16, 16]);
        let split = forward_split(&wgpu::Limits::default(), &c, &s, Mode::Training).unwrap();
        assert_eq!(
            split,
            Split {
                batch: 4,
                channels: 8,
                rows: 16
            }
        );
        assert!(!split.splits(&c, &s));
    }

    /// `split` is accepted by `check` and is the largest such in the dimension it split last.
    fn is_largest(l: &wgpu::Limits, c: &DrConvConfig, s: &ForwardShape, split: Split) {
        let check = |o: usize, b: usize, ny: usize| {
            let sub = with_out_channels(c, o);
            let shape = match ny < s.out_height {
                true => band_shape(c, s, ny),
                false => ForwardShape { batch: b, ..*s },
            };
            check_forward(l, &sub, &shape, Mode::Training).is_ok()
        };
        assert!(check(split.channels, split.batch, split.rows), "{split:?}");
        if split.rows < s.out_height {
            assert!(!check(split.channels, 1, split.rows + 1), "{split:?}");
        } else if split.channels < c.out_channels {
            assert!(!check(split.channels + 1, 1, s.out_height), "{split:?}");
        } else if split.batch < s.batch {
            assert!(
                !check(c.out_channels, split.batch + 1, s.out_height),
                "{split:?}"
            );
        }
    }

    #[test]
    fn the_batch_splits_first_then_channels_then_rows() {
        // The training correlation is B x r x O x H' x W' = 4 x 4 x 8 x 16 x 16 floats, 32 KiB a
        // sample and 4 KiB a sample's output channel.
        let (c, s) = layer(8, 8, 4, [4, 8, 16, 16]);
        let at = |kib: u64| {
            let l = limits(kib << 10);
            let split = forward_split(&l, &c, &s, Mode::Training).unwrap();
            is_largest(&l, &c, &s, split);
            split
        };
        let batch = at(100);
        assert_eq!((batch.batch, batch.channels, batch.rows), (3, 8, 16));
        let channels = at(20);
        assert_eq!(
            (channels.batch, channels.channels, channels.rows),
            (1, 5, 16)
        );
        // One sample's 8 KiB input no longer fits whole: bands of output rows.
        let rows = at(2);
        assert!(rows.batch == 1 && rows.splits_rows(&s), "{rows:?}");
        // Inference binds no correlation: the 36 KiB kernel and 32 KiB input fit 40 KiB.
        let l = limits(40 << 10);
        assert!(!forward_split(&l, &c, &s, Mode::Inference)
            .unwrap()
            .splits(&c, &s));
        assert!(forward_split(&l, &c, &s, Mode::Training)
            .unwrap()
            .splits(&c, &s));
    }

    #[test]
    fn one_output_row_that_does_not_fit_is_refused_by_name() {
        let (c, s) = layer(8, 8, 4, [1, 8, 16, 16]);
        let e = forward_split(&limits(64), &c, &s, Mode::Training).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("one output row per sub-plan"), "{msg}");
    }
}
