//! The geometry of a band of output rows (the row split, `super::rows`): how many input rows
//! its sub-plan takes and which of its output rows are kept.

use crate::config::{DrConvConfig, ForwardShape};

/// Where a band of `ny` output rows sits in its sub-plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Band {
    /// Discarded sub-plan output rows above the band's first.
    pub top: usize,
    /// Input rows of the sub-plan.
    pub in_rows: usize,
    /// Output rows of the sub-plan: `top + ny + floor(p / s)`.
    pub out_rows: usize,
}

/// The band of `ny` output rows: input rows from the first tap of its first row (less `top`
/// rows) to the last tap of its last.
pub fn band(c: &DrConvConfig, ny: usize) -> Band {
    let (s, p) = (c.stride, c.padding);
    let top = p.div_ceil(s);
    let in_rows = (top + ny - 1) * s + (c.kernel_size - 1) * c.dilation + 1 - p;
    Band {
        top,
        in_rows,
        out_rows: top + ny + p / s,
    }
}

/// The forward shape of the sub-plan of one band of `ny` output rows of `s`.
pub fn band_shape(c: &DrConvConfig, s: &ForwardShape, ny: usize) -> ForwardShape {
    let b = band(c, ny);
    ForwardShape {
        batch: 1,
        height: b.in_rows,
        out_height: b.out_rows,
        ..*s
    }
}
