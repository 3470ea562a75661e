//! Layer hyper-parameters and the shape arithmetic shared by the CPU reference and the GPU plans.

use crate::error::{DrConvError, Result};

/// Hyper-parameters of a DRConv2d layer, as the reference constructor takes them:
/// `DRConv2d(in_channels, out_channels, kernel_size, region_num, stride=1, padding=0, dilation=1)`.
/// Stride, padding and dilation apply to the guide conv and to the correlation alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct DrConvConfig {
    /// Input channels `I`.
    pub in_channels: usize,
    /// Output channels `O`.
    pub out_channels: usize,
    /// Kernel size `k` (square kernels).
    pub kernel_size: usize,
    /// Regions `r`: kernels generated per sample, one chosen per pixel by the guide.
    pub region_num: usize,
    /// Stride of the guide conv and the correlation.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
    /// Dilation of the kernel taps.
    pub dilation: usize,
}

/// The shape of one forward: input `B x I x H x W`, output `B x O x H' x W'`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ForwardShape {
    /// Samples `B`.
    pub batch: usize,
    /// Input height `H`.
    pub height: usize,
    /// Input width `W`.
    pub width: usize,
    /// Output height `H'`.
    pub out_height: usize,
    /// Output width `W'`.
    pub out_width: usize,
}

impl DrConvConfig {
    /// Validated config with PyTorch's defaults: stride 1, padding 0, dilation 1.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        region_num: usize,
    ) -> Result<Self> {
        let c = DrConvConfig {
            in_channels,
            out_channels,
            kernel_size,
            region_num,
            stride: 1,
            padding: 0,
            dilation: 1,
        };
        c.validate()?;
        Ok(c)
    }

    /// The same layer with `stride` (at least 1).
    pub fn with_stride(mut self, stride: usize) -> Result<Self> {
        self.stride = stride;
        self.validate()?;
        Ok(self)
    }

    /// The same layer with `padding`.
    pub fn with_padding(mut self, padding: usize) -> Result<Self> {
        self.padding = padding;
        self.validate()?;
        Ok(self)
    }

    /// The same layer with `dilation` (at least 1).
    pub fn with_dilation(mut self, dilation: usize) -> Result<Self> {
        self.dilation = dilation;
        self.validate()?;
        Ok(self)
    }

    /// Checks every field is positive (padding may be 0) and the parameter count fits u32 indexing.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("kernel_size", self.kernel_size),
            ("region_num", self.region_num),
            ("stride", self.stride),
            ("dilation", self.dilation),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(DrConvError::Config(format!(
                    "{name} is 0; it must be at least 1"
                )));
            }
        }
        // Every parameter tensor is indexed with u32 in the shaders.
        let largest = (self.region_num as u128)
            * (self.in_channels as u128)
            * (self.out_channels as u128)
            * (self.region_num as u128).max((self.kernel_size as u128).pow(2));
        if largest > u32::MAX as u128 {
            return Err(DrConvError::TooLarge {
                what: format!(
                    "parameter tensors of DRConv2d(in={}, out={}, k={}, r={})",
                    self.in_channels, self.out_channels, self.kernel_size, self.region_num
                ),
                size: largest.min(u64::MAX as u128) as u64,
                limit: u32::MAX as u64,
            });
        }
        Ok(())
    }

    /// Output size along one axis: `floor((n + 2p - d(k-1) - 1)/s) + 1`, or an error if <= 0.
    pub fn out_len(&self, n: usize, axis: &str) -> Result<usize> {
        // Checked: absurd sizes must be an error, not an overflow (a panic in debug builds).
        let too_large = |what: String| DrConvError::TooLarge {
            what,
            size: u64::MAX,
            limit: usize::MAX as u64,
        };
        let span = self
            .dilation
            .checked_mul(self.kernel_size.saturating_sub(1))
            .and_then(|v| v.checked_add(1))
            .ok_or_else(|| {
                too_large(format!(
                    "dilated kernel span dilation * (kernel_size - 1) + 1 with dilation {}, kernel_size {}",
                    self.dilation, self.kernel_size
                ))
            })?;
        let padded = self
            .padding
            .checked_mul(2)
            .and_then(|p| p.checked_add(n))
            .ok_or_else(|| {
                too_large(format!(
                    "padded input {axis} {n} + 2 * padding {}",
                    self.padding
                ))
            })?;
        if padded < span {
            return Err(DrConvError::Shape(format!(
                "input {axis} {n} with padding {} is {padded}, smaller than the dilated kernel span {span} \
                 (kernel_size {}, dilation {}): the output {axis} would be <= 0",
                self.padding, self.kernel_size, self.dilation
            )));
        }
        Ok((padded - span) / self.stride + 1)
    }

    /// Shape of a forward on input `[batch, channels, height, width]`, with every check.
    pub fn forward_shape(&self, input_shape: &[usize]) -> Result<ForwardShape> {
        self.validate()?;
        if input_shape.len() != 4 {
            return Err(DrConvError::Shape(format!(
                "input must be 4-D (B x C x H x W), got shape {input_shape:?}"
            )));
        }
        let (b, c, h, w) = (
            input_shape[0],
            input_shape[1],
            input_shape[2],
            input_shape[3],
        );
        if c != self.in_channels {
            return Err(DrConvError::Shape(format!(
                "input has {c} channels but the layer expects in_channels = {}",
                self.in_channels
            )));
        }
        if b == 0 || h == 0 || w == 0 {
            return Err(DrConvError::Shape(format!(
                "input shape {input_shape:?} is empty (batch, height and width must be at least 1)"
            )));
        }
        Ok(ForwardShape {
            batch: b,
            height: h,
            width: w,
            out_height: self.out_len(h, "height")?,
            out_width: self.out_len(w, "width")?,
        })
    }

    /// `r * I * O`: channels of the generated kernel tensor.
    pub fn kernel_channels(&self) -> usize {
        self.region_num * self.in_channels * self.out_channels
    }
}

/// Which forward to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Guide and argmax first, then only each pixel's own region's correlation: r times less
    /// correlation work and no B x r x O x H' x W' tensor.
    Inference,
    /// Every region's correlation (kept for the backward's guide gradient and for inspection).
    Training,
}

impl ForwardShape {
    /// B x I x H x W.
    pub fn input(&self, c: &DrConvConfig) -> [usize; 4] {
        [self.batch, c.in_channels, self.height, self.width]
    }
    /// B x O x H' x W'.
    pub fn output(&self, c: &DrConvConfig) -> [usize; 4] {
        [self.batch, c.out_channels, self.out_height, self.out_width]
    }
    /// The adaptive pool of the input: B x I x k x k.
    pub fn pooled(&self, c: &DrConvConfig) -> [usize; 4] {
        [self.batch, c.in_channels, c.kernel_size, c.kernel_size]
    }
    /// The first 1x1 conv of the kernel branch: B x r*r x k x k.
    pub fn logits(&self, c: &DrConvConfig) -> [usize; 4] {
        [
            self.batch,
            c.region_num * c.region_num,
            c.kernel_size,
            c.kernel_size,
        ]
    }
    /// The generated kernels: B x r*I*O x k x k.
    pub fn kernel(&self, c: &DrConvConfig) -> [usize; 4] {
        [
            self.batch,
            c.kernel_channels(),
            c.kernel_size,
            c.kernel_size,
        ]
    }
    /// Every region's correlation (training mode): B x r x O x H' x W'.
    pub fn corr(&self, c: &DrConvConfig) -> [usize; 5] {
        [
            self.batch,
            c.region_num,
            c.out_channels,
            self.out_height,
            self.out_width,
        ]
    }
    /// The guide conv's logits: B x r x H' x W'.
    pub fn guide(&self, c: &DrConvConfig) -> [usize; 4] {
        [self.batch, c.region_num, self.out_height, self.out_width]
    }
    /// The region map: B x H' x W'.
    pub fn region(&self) -> [usize; 3] {
        [self.batch, self.out_height, self.out_width]
    }
}

/// PyTorch's adaptive-pool bin `[floor(i*n/k), ceil((i+1)*n/k))`.
pub fn adaptive_bin(i: usize, n: usize, k: usize) -> (usize, usize) {
    let start = i * n / k;
    let end = ((i + 1) * n).div_ceil(k);
    (start, end)
}
