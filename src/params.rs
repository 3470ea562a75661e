//! The six parameters of DRConv2d, with the reference's state_dict names, shapes and default init.

use crate::config::DrConvConfig;
use crate::error::{DrConvError, Result};
use crate::rng::Rng;

/// The parameters, in the reference module's `state_dict()` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamId {
    /// `conv_kernel.1.weight`: r*r x I x 1 x 1 (1x1 conv after the adaptive pool).
    KernelW1,
    /// `conv_kernel.1.bias`: r*r.
    KernelB1,
    /// `conv_kernel.3.weight`: r*I*O x r x 1 x 1 (grouped 1x1 conv, groups = r).
    KernelW3,
    /// `conv_kernel.3.bias`: r*I*O.
    KernelB3,
    /// `conv_guide.weight`: r x I x k x k.
    GuideW,
    /// `conv_guide.bias`: r.
    GuideB,
}

impl ParamId {
    /// The six, in `state_dict` order.
    pub const ALL: [ParamId; 6] = [
        ParamId::KernelW1,
        ParamId::KernelB1,
        ParamId::KernelW3,
        ParamId::KernelB3,
        ParamId::GuideW,
        ParamId::GuideB,
    ];

    /// The reference's state_dict key.
    pub fn name(self) -> &'static str {
        match self {
            ParamId::KernelW1 => "conv_kernel.1.weight",
            ParamId::KernelB1 => "conv_kernel.1.bias",
            ParamId::KernelW3 => "conv_kernel.3.weight",
            ParamId::KernelB3 => "conv_kernel.3.bias",
            ParamId::GuideW => "conv_guide.weight",
            ParamId::GuideB => "conv_guide.bias",
        }
    }

    /// The parameter with this `state_dict` name.
    pub fn from_name(name: &str) -> Option<ParamId> {
        ParamId::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Its position in `state_dict` order.
    pub fn index(self) -> usize {
        self as usize
    }

    /// PyTorch's Conv2d fan-in for this parameter's conv: in_channels/groups * k * k.
    fn fan_in(self, c: &DrConvConfig) -> usize {
        match self {
            ParamId::KernelW1 | ParamId::KernelB1 => c.in_channels,
            ParamId::KernelW3 | ParamId::KernelB3 => c.region_num,
            ParamId::GuideW | ParamId::GuideB => c.in_channels * c.kernel_size * c.kernel_size,
        }
    }
}

/// Host copy of a layer's parameters. `values[id.index()]` holds the tensor named `id.name()`.
#[derive(Debug, Clone, PartialEq)]
pub struct DrConvParams {
    /// The layer these parameters are for.
    pub config: DrConvConfig,
    /// The values, in `state_dict` order (index with [`ParamId::index`]).
    pub values: [Vec<f32>; 6],
}

impl DrConvParams {
    /// PyTorch's default Conv2d init: weights and biases uniform in +-1/sqrt(fan_in)
    /// (kaiming_uniform_ with a = sqrt(5) gives exactly that bound for the weights).
    pub fn init(config: DrConvConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let mut rng = Rng::new(seed);
        let values = ParamId::ALL.map(|id| {
            let n: usize = config.param_shape(id).iter().product();
            let bound = 1.0 / (id.fan_in(&config) as f32).sqrt();
            (0..n).map(|_| rng.range(-bound, bound)).collect()
        });
        Ok(DrConvParams { config, values })
    }

    /// Parameters from explicit tensors (state_dict order), shape-checked.
    pub fn from_values(config: DrConvConfig, values: [Vec<f32>; 6]) -> Result<Self> {
        config.validate()?;
        for id in ParamId::ALL {
            let shape = config.param_shape(id);
            let n: usize = shape.iter().product();
            let got = values[id.index()].len();
            if got != n {
                return Err(DrConvError::Weights(format!(
                    "{} has {got} values but shape {shape:?} needs {n}",
                    id.name()
                )));
            }
        }
        Ok(DrConvParams { config, values })
    }

    /// The values of one parameter.
    pub fn get(&self, id: ParamId) -> &[f32] {
        &self.values[id.index()]
    }

    /// The values of one parameter, to change.
    pub fn get_mut(&mut self, id: ParamId) -> &mut Vec<f32> {
        &mut self.values[id.index()]
    }

    /// One parameter's shape (the reference's `state_dict` shape).
    pub fn shape(&self, id: ParamId) -> Vec<usize> {
        self.config.param_shape(id)
    }
}

impl DrConvConfig {
    /// Shapes of the parameters in state_dict order (see [`ParamId`]).
    pub fn param_shape(&self, id: ParamId) -> Vec<usize> {
        use ParamId::*;
        let (i, o, k, r) = (
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.region_num,
        );
        match id {
            KernelW1 => vec![r * r, i, 1, 1],
            KernelB1 => vec![r * r],
            KernelW3 => vec![r * i * o, r, 1, 1],
            KernelB3 => vec![r * i * o],
            GuideW => vec![r, i, k, k],
            GuideB => vec![r],
        }
    }
}
