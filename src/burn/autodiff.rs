//! [`DrConvOps`] under burn's autodiff: a tracked forward runs the training path and registers
//! a backward step that calls [`DrConvOps::drconv_backward`] on the inner backend; an untracked
//! one runs the fused inference path.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::backend::tensor::FloatTensor;
use burn::backend::Backend;

use super::ops::{DrConvGrads, DrConvOps, KernelCall};
use super::runtime::next_ticket;
use crate::config::Mode;

/// The backward step: the forward's seven inputs (x, then the parameters) and its call.
#[derive(Debug)]
struct DrConvBackward;

impl<B: Backend + DrConvOps> Backward<B, 7> for DrConvBackward {
    type State = ([FloatTensor<B>; 7], KernelCall);

    fn backward(self, ops: Ops<Self::State, 7>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let ([x, w1, b1, w3, b3, gw, gb], call) = ops.state;
        let g = B::drconv_backward(x, w1, b1, w3, b3, gw, gb, grad, call);
        let all = [g.x, g.w1, g.b1, g.w3, g.b3, g.gw, g.gb];
        for (parent, value) in ops.parents.into_iter().zip(all) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, value);
            }
        }
    }
}

impl<B: Backend + DrConvOps, C: CheckpointStrategy> DrConvOps for Autodiff<B, C> {
    fn drconv_forward(
        x: FloatTensor<Self>,
        w1: FloatTensor<Self>,
        b1: FloatTensor<Self>,
        w3: FloatTensor<Self>,
        b3: FloatTensor<Self>,
        gw: FloatTensor<Self>,
        gb: FloatTensor<Self>,
        call: KernelCall,
    ) -> FloatTensor<Self> {
        let inputs = [x, w1, b1, w3, b3, gw, gb];
        let nodes = inputs.each_ref().map(|t| t.node());
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
                let inner = inputs.map(|t| t.into_primitive());
                let [x, w1, b1, w3, b3, gw, gb] = inner.clone();
                let y = B::drconv_forward(x, w1, b1, w3, b3, gw, gb, call.clone());
                prep.finish((inner, call), y)
            }
            OpsKind::UnTracked(prep) => {
                let call = KernelCall {
                    mode: Mode::Inference,
                    ..call
                };
                let [x, w1, b1, w3, b3, gw, gb] = inputs.map(|t| t.into_primitive());
                prep.finish(B::drconv_forward(x, w1, b1, w3, b3, gw, gb, call))
            }
        }
    }

    fn drconv_backward(
        x: FloatTensor<Self>,
        w1: FloatTensor<Self>,
        b1: FloatTensor<Self>,
        w3: FloatTensor<Self>,
        b3: FloatTensor<Self>,
        gw: FloatTensor<Self>,
        gb: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        call: KernelCall,
    ) -> DrConvGrads<Self> {
        // A backward called directly (not from the graph): the inner backend's, untracked.
        let [x, w1, b1, w3, b3, gw, gb, grad] =
            [x, w1, b1, w3, b3, gw, gb, grad].map(|t| t.into_primitive());
        let g = B::drconv_backward(x, w1, b1, w3, b3, gw, gb, grad, call);
        let wrap = <Self as burn::backend::AutodiffBackend>::from_inner;
        DrConvGrads {
            x: wrap(g.x),
            w1: wrap(g.w1),
            b1: wrap(g.b1),
            w3: wrap(g.w3),
            b3: wrap(g.b3),
            gw: wrap(g.gw),
            gb: wrap(g.gb),
        }
    }
}
