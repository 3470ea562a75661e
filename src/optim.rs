//! Optimizers with PyTorch's update rules and defaults: the config is shared by the CPU and GPU
//! trainers; [`OptimizerState`] applies the steps on the host.
//!
//! * SGD (`torch.optim.SGD`, dampening 0, nesterov off): `g += wd*p`;
//!   `buf = g` on the first step, then `buf = momentum*buf + g`; `p -= lr*buf`
//!   (with momentum 0 there is no buffer: `p -= lr*g`).
//! * Adam (`torch.optim.Adam`, amsgrad off): `g += wd*p`; `m = b1*m + (1-b1)*g`;
//!   `v = b2*v + (1-b2)*g^2`; `p -= (lr/(1-b1^t)) * m / (sqrt(v)/sqrt(1-b2^t) + eps)`,
//!   i.e. `p -= lr * mhat / (sqrt(vhat) + eps)`.

use crate::error::{DrConvError, Result};
use crate::params::{DrConvParams, ParamId};
use crate::trace::Gradients;

/// Optimizer hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum OptimizerConfig {
    /// Stochastic gradient descent with momentum (PyTorch `torch.optim.SGD`).
    Sgd {
        /// Learning rate.
        lr: f32,
        /// Momentum (0 for plain SGD).
        momentum: f32,
        /// L2 weight decay added to the gradient.
        weight_decay: f32,
    },
    /// Adam (PyTorch `torch.optim.Adam`, L2 weight decay added to the gradient).
    Adam {
        /// Learning rate.
        lr: f32,
        /// Decay of the first-moment average.
        beta1: f32,
        /// Decay of the second-moment average.
        beta2: f32,
        /// Added to the root of the second moment.
        eps: f32,
        /// L2 weight decay added to the gradient.
        weight_decay: f32,
    },
}

impl OptimizerConfig {
    /// Plain SGD with PyTorch's defaults: momentum 0, weight decay 0.
    pub fn sgd(lr: f32) -> Self {
        OptimizerConfig::Sgd {
            lr,
            momentum: 0.0,
            weight_decay: 0.0,
        }
    }

    /// Adam with PyTorch's defaults: betas (0.9, 0.999), eps 1e-8, weight decay 0.
    pub fn adam(lr: f32) -> Self {
        OptimizerConfig::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }

    /// SGD only: sets the momentum (Adam is returned unchanged).
    pub fn with_momentum(mut self, m: f32) -> Self {
        if let OptimizerConfig::Sgd { momentum, .. } = &mut self {
            *momentum = m;
        }
        self
    }

    /// Sets the (L2, PyTorch-style coupled) weight decay.
    pub fn with_weight_decay(mut self, wd: f32) -> Self {
        match &mut self {
            OptimizerConfig::Sgd { weight_decay, .. }
            | OptimizerConfig::Adam { weight_decay, .. } => *weight_decay = wd,
        }
        self
    }

    /// The learning rate.
    pub fn lr(&self) -> f32 {
        match *self {
            OptimizerConfig::Sgd { lr, .. } | OptimizerConfig::Adam { lr, .. } => lr,
        }
    }

    /// The same checks as PyTorch's constructors: lr, momentum, weight decay, eps >= 0 and
    /// betas in [0, 1), all finite.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &str, v: f32, range: &str| {
            Err(DrConvError::Config(format!(
                "optimizer {name} = {v} is invalid: it must be {range}"
            )))
        };
        let non_neg = |name: &str, v: f32| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                bad(name, v, "finite and >= 0")
            }
        };
        match *self {
            OptimizerConfig::Sgd {
                lr,
                momentum,
                weight_decay,
            } => {
                non_neg("lr", lr)?;
                non_neg("momentum", momentum)?;
                non_neg("weight_decay", weight_decay)
            }
            OptimizerConfig::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                non_neg("lr", lr)?;
                non_neg("eps", eps)?;
                non_neg("weight_decay", weight_decay)?;
                for (name, b) in [("beta1", beta1), ("beta2", beta2)] {
                    if !(0.0..1.0).contains(&b) {
                        return bad(name, b, "in [0, 1)");
                    }
                }
                Ok(())
            }
        }
    }
}

/// Host optimizer state for one layer: the step count and, per parameter, the momentum buffer
/// (SGD) or the first and second moments (Adam).
#[derive(Debug, Clone)]
pub struct OptimizerState {
    /// The optimizer this state belongs to.
    pub config: OptimizerConfig,
    /// Steps taken so far (PyTorch's `state['step']`).
    pub step: u64,
    /// SGD: momentum buffer (empty until the first step or when momentum is 0). Adam: `m`.
    pub m: [Vec<f32>; 6],
    /// Adam: `v` (empty for SGD).
    pub v: [Vec<f32>; 6],
}

impl OptimizerState {
    /// Fresh state (step 0, buffers empty) after validating the config.
    pub fn new(config: OptimizerConfig) -> Result<Self> {
        config.validate()?;
        Ok(OptimizerState {
            config,
            step: 0,
            m: Default::default(),
            v: Default::default(),
        })
    }

    /// One optimizer step on `params` with the gradients of a backward.
    pub fn step(&mut self, params: &mut DrConvParams, grads: &Gradients) -> Result<()> {
        self.apply(params, &grads.params)
    }

    /// One optimizer step with raw parameter gradients in state_dict order.
    pub fn apply(&mut self, params: &mut DrConvParams, grads: &[Vec<f32>; 6]) -> Result<()> {
        for id in ParamId::ALL {
            let (np, ng) = (params.get(id).len(), grads[id.index()].len());
            if np != ng {
                return Err(DrConvError::Shape(format!(
                    "gradient of {} has {ng} values but the parameter has {np}",
                    id.name()
                )));
            }
            for buf in [&self.m[id.index()], &self.v[id.index()]] {
                if !buf.is_empty() && buf.len() != np {
                    return Err(DrConvError::Shape(format!(
                        "optimizer state of {} has {} values but the parameter has {np}",
                        id.name(),
                        buf.len()
                    )));
                }
            }
        }
        self.step += 1;
        let t = self.step.min(i32::MAX as u64) as i32;
        for id in ParamId::ALL {
            let k = id.index();
            let p = params.get_mut(id);
            let g = &grads[k];
            match self.config {
                OptimizerConfig::Sgd {
                    lr,
                    momentum,
                    weight_decay,
                } => {
                    let buf = &mut self.m[k];
                    let first = buf.is_empty();
                    if momentum != 0.0 && first {
                        buf.resize(p.len(), 0.0);
                    }
                    for j in 0..p.len() {
                        let mut d = g[j];
                        if weight_decay != 0.0 {
                            d += weight_decay * p[j];
                        }
                        if momentum != 0.0 {
                            buf[j] = if first { d } else { momentum * buf[j] + d };
                            d = buf[j];
                        }
                        p[j] -= lr * d;
                    }
                }
                OptimizerConfig::Adam {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                } => {
                    let (m, v) = (&mut self.m[k], &mut self.v[k]);
                    m.resize(p.len(), 0.0);
                    v.resize(p.len(), 0.0);
                    let (step_size, bc2_sqrt) = adam_step_scalars(lr, beta1, beta2, t);
                    for j in 0..p.len() {
                        let mut d = g[j];
                        if weight_decay != 0.0 {
                            d += weight_decay * p[j];
                        }
                        m[j] = beta1 * m[j] + (1.0 - beta1) * d;
                        v[j] = beta2 * v[j] + (1.0 - beta2) * d * d;
                        let denom = v[j].sqrt() / bc2_sqrt + eps;
                        p[j] -= step_size * m[j] / denom;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Adam's step-dependent scalars for step `t` (1-based): `lr / (1 - beta1^t)` and
/// `sqrt(1 - beta2^t)`, computed in f64 like PyTorch's Python floats, then used in f32. Shared
/// by the CPU optimizer and the GPU one so both round identically.
pub fn adam_step_scalars(lr: f32, beta1: f32, beta2: f32, t: i32) -> (f32, f32) {
    let bc1 = 1.0 - (beta1 as f64).powi(t);
    let bc2_sqrt = (1.0 - (beta2 as f64).powi(t)).sqrt();
    ((lr as f64 / bc1) as f32, bc2_sqrt as f32)
}
