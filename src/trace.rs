//! What a forward and a backward produce, shared by the CPU reference and the GPU runner so that
//! `verify` compares them tensor by tensor under the golden files' names.

use crate::config::ForwardShape;
use crate::tensor::Tensor;

/// Every tensor a training-mode forward produces. `corr` is `None` on the fused inference path,
/// which never materialises the B x r x O x H' x W' correlation.
#[derive(Debug, Clone)]
pub struct ForwardTrace {
    /// The shapes of this forward.
    pub shape: ForwardShape,
    /// B x I x k x k
    pub pooled: Tensor,
    /// B x r*r x k x k
    pub kernel_logits: Tensor,
    /// B x r*r x k x k
    pub sigmoid: Tensor,
    /// B x r*I*O x k x k
    pub kernel: Tensor,
    /// B x r x O x H' x W'
    pub corr: Option<Tensor>,
    /// B x r x H' x W'
    pub guide: Tensor,
    /// B x H' x W', argmax over r of `guide` (first maximal index; NaN counts as maximal).
    pub region_index: Vec<i32>,
    /// B x O x H' x W'
    pub output: Tensor,
}

/// Gradients of a backward given the upstream gradient `grad_output`.
#[derive(Debug, Clone)]
pub struct Gradients {
    /// dL/dx, B x I x H x W
    pub x: Tensor,
    /// dL/dparam in state_dict order (index with `ParamId::index`).
    pub params: [Vec<f32>; 6],
    /// dL/d(pooled input).
    pub pooled: Tensor,
    /// dL/d(kernel logits).
    pub kernel_logits: Tensor,
    /// dL/d(sigmoid of the logits).
    pub sigmoid: Tensor,
    /// dL/d(generated kernels).
    pub kernel: Tensor,
    /// B x r x O x H' x W' (the upstream gradient masked to the selected region).
    pub corr: Option<Tensor>,
    /// dL/d(guide logits), through the reference's softmax straight-through for the argmax.
    pub guide: Tensor,
}

impl ForwardTrace {
    /// The float tensors under their golden file stems (`output`, `inter.pooled`, ...).
    pub fn named(&self) -> Vec<(&'static str, &Tensor)> {
        let mut v = vec![
            ("output", &self.output),
            ("inter.pooled", &self.pooled),
            ("inter.kernel_logits", &self.kernel_logits),
            ("inter.sigmoid", &self.sigmoid),
            ("inter.kernel", &self.kernel),
            ("inter.guide", &self.guide),
        ];
        if let Some(c) = &self.corr {
            v.push(("inter.corr", c));
        }
        v
    }
}

impl Gradients {
    /// The gradient tensors under their golden file stems (`grad.x`, `grad.param.*`, `grad.inter.*`).
    /// Parameter gradients come back as flat tensors; callers compare by value.
    pub fn named(&self) -> Vec<(String, Tensor)> {
        use crate::params::ParamId;
        let mut v = vec![("grad.x".to_string(), self.x.clone())];
        for id in ParamId::ALL {
            let data = self.params[id.index()].clone();
            v.push((
                format!("grad.param.{}", id.name()),
                Tensor {
                    shape: vec![data.len()],
                    data,
                },
            ));
        }
        v.push(("grad.inter.pooled".into(), self.pooled.clone()));
        v.push((
            "grad.inter.kernel_logits".into(),
            self.kernel_logits.clone(),
        ));
        v.push(("grad.inter.sigmoid".into(), self.sigmoid.clone()));
        v.push(("grad.inter.kernel".into(), self.kernel.clone()));
        if let Some(c) = &self.corr {
            v.push(("grad.inter.corr".into(), c.clone()));
        }
        v.push(("grad.inter.guide".into(), self.guide.clone()));
        v
    }
}
