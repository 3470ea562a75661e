//! A small YOLO-style neck in burn with two DRConv blocks: the same layout, names and
//! initialisation as `scripts/export_burn_neck.py`'s PyTorch `Neck`, so its `state_dict` loads.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor};
use drconv::burn::{DrConv2d, DrConv2dConfig};

/// Conv, batch norm, SiLU.
#[derive(Module, Debug)]
pub struct ConvBnSilu {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

impl ConvBnSilu {
    pub fn new(c_in: usize, c_out: usize, k: usize, device: &Device) -> Self {
        let p = k / 2;
        ConvBnSilu {
            conv: Conv2dConfig::new([c_in, c_out], [k, k])
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .init(device),
            bn: BatchNormConfig::new(c_out).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        silu(self.bn.forward(self.conv.forward(x)))
    }
}

/// DRConv (3x3, padding 1), batch norm, SiLU.
#[derive(Module, Debug)]
pub struct DrBlock {
    pub drconv: DrConv2d,
    pub bn: BatchNorm,
}

impl DrBlock {
    pub fn new(c_in: usize, c_out: usize, regions: usize, device: &Device) -> Self {
        DrBlock {
            drconv: DrConv2dConfig::new(c_in, c_out, 3, regions)
                .with_padding(1)
                .init(device),
            bn: BatchNormConfig::new(c_out).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        silu(self.bn.forward(self.drconv.forward(x)))
    }
}

/// Stem, two DRConv blocks (2 and 4 regions), 1x1 head to RGB.
#[derive(Module, Debug)]
pub struct Neck {
    pub stem: ConvBnSilu,
    pub block1: DrBlock,
    pub block2: DrBlock,
    pub head: Conv2d,
}

impl Neck {
    pub fn new(device: &Device) -> Self {
        Neck {
            stem: ConvBnSilu::new(3, 16, 3, device),
            block1: DrBlock::new(16, 16, 2, device),
            block2: DrBlock::new(16, 16, 4, device),
            head: Conv2dConfig::new([16, 3], [1, 1]).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.head.forward(
            self.block2
                .forward(self.block1.forward(self.stem.forward(x))),
        )
    }

    /// Each DRConv block's input, for its region map.
    pub fn block_inputs(&self, x: Tensor<4>) -> [Tensor<4>; 2] {
        let a = self.stem.forward(x);
        let b = self.block1.forward(a.clone());
        [a, b]
    }
}

/// The same neck with a plain 3x3 `Conv2d` where each DRConv is (the baseline).
#[derive(Module, Debug)]
pub struct ConvNeck {
    pub stem: ConvBnSilu,
    pub block1: ConvBnSilu,
    pub block2: ConvBnSilu,
    pub head: Conv2d,
}

impl ConvNeck {
    pub fn new(device: &Device) -> Self {
        ConvNeck {
            stem: ConvBnSilu::new(3, 16, 3, device),
            block1: ConvBnSilu::new(16, 16, 3, device),
            block2: ConvBnSilu::new(16, 16, 3, device),
            head: Conv2dConfig::new([16, 3], [1, 1]).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.head.forward(
            self.block2
                .forward(self.block1.forward(self.stem.forward(x))),
        )
    }
}

/// What the example trains: either neck.
pub trait Net: Module + Clone {
    fn run(&self, x: Tensor<4>) -> Tensor<4>;
}

impl Net for Neck {
    fn run(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward(x)
    }
}

impl Net for ConvNeck {
    fn run(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward(x)
    }
}
