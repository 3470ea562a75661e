//! [`DrConvOps`] under burn's autodiff: a tracked forward runs the training path and registers
//! a backward step that calls [`DrConvOps::drconv_backward`] on the inner backend; an untracked
//! one runs the fused inference path.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::backend::tensor::FloatTensor;
use burn::backend::Backend;

use super::ops::{DrConvOps, DrConvTensors, KernelCall};
use super::runtime::next_ticket;
use crate::config::Mode;

/// The backward step: the forward's seven inputs (x, then the parameters) and its call.
#[derive(Debug)]
struct DrConvBackward;

impl<B: Backend + DrConvOps> Backward<B, 7> for DrConvBackward {
    type State = (DrConvTensors<B>, KernelCall);

    fn backward(self, ops: Ops<Self::State, 7>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (tensors, call) = ops.state;
        let g = B::drconv_backward(tensors, grad, call);
        for (parent, value) in ops.parents.into_iter().zip(g.into_array()) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, value);
            }
        }
    }
}

impl<B: Backend + DrConvOps, C: CheckpointStrategy> DrConvOps for Autodiff<B, C> {
    fn drconv_forward(tensors: DrConvTensors<Self>, call: KernelCall) -> FloatTensor<Self> {
        let tensors = tensors.into_array();
        let nodes = tensors.each_ref().map(|t| t.node());
        let inner = DrConvTensors::from_array(tensors.map(|t| t.into_primitive()));
        match DrConvBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let call = KernelCall {
                    mode: Mode::Training,
                    ticket: next_ticket(),
                    ..call
                };
                let y = B::drconv_forward(inner.clone(), call.clone());
                prep.finish((inner, call), y)
            }
            OpsKind::UnTracked(prep) => {
                let call = KernelCall {
                    mode: Mode::Inference,
                    ..call
                };
                prep.finish(B::drconv_forward(inner, call))
            }
        }
    }

    fn drconv_backward(
        tensors: DrConvTensors<Self>,
        grad: FloatTensor<Self>,
        call: KernelCall,
    ) -> DrConvTensors<Self> {
        // A backward called directly (not from the graph): the inner backend's, untracked.
        let inner = tensors.map(|t| t.into_primitive());
        B::drconv_backward(inner, grad.into_primitive(), call)
            .map(<Self as burn::backend::AutodiffBackend>::from_inner)
    }
}
