//! The burn backend extension: DRConv's forward and backward as two backend operations, so burn
//! routes them to our kernels on a wgpu device (`CubeBackend`, under burn's fusion) and records
//! them in its autodiff graph (`Autodiff<B>`).

use burn::backend::fusion::custom::TensorSpec;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Backend, ExtensionType};

use super::runtime::Runtime;
use crate::config::Mode;

/// What one call of our kernels needs besides tensors: the module's layers, the path, and the
/// training forward it belongs to (a backward with the same ticket reuses that forward's saved
/// tensors instead of recomputing them).
#[derive(Clone, Debug)]
pub struct KernelCall {
    pub(crate) runtime: Runtime,
    pub(crate) mode: Mode,
    pub(crate) ticket: u64,
}

/// DRConv's seven tensors by name: the input `x` and the six parameters, under the PyTorch
/// `state_dict` names. The op's inputs, and (each field dL/d of that tensor) its gradients.
#[derive(ExtensionType, Clone, Debug)]
#[extension_type(fusion)]
pub struct DrConvTensors<B: Backend> {
    /// The input x, B x I x H x W (or dL/dx).
    pub x: FloatTensor<B>,
    /// `conv_kernel.1.weight`.
    pub w1: FloatTensor<B>,
    /// `conv_kernel.1.bias`.
    pub b1: FloatTensor<B>,
    /// `conv_kernel.3.weight`.
    pub w3: FloatTensor<B>,
    /// `conv_kernel.3.bias`.
    pub b3: FloatTensor<B>,
    /// `conv_guide.weight`.
    pub gw: FloatTensor<B>,
    /// `conv_guide.bias`.
    pub gb: FloatTensor<B>,
}

impl<B: Backend> DrConvTensors<B> {
    /// The seven tensors: `x`, then the parameters in `state_dict` order.
    pub fn into_array(self) -> [FloatTensor<B>; 7] {
        [self.x, self.w1, self.b1, self.w3, self.b3, self.gw, self.gb]
    }

    /// The tensors in [`DrConvTensors::into_array`]'s order.
    pub fn from_array([x, w1, b1, w3, b3, gw, gb]: [FloatTensor<B>; 7]) -> Self {
        DrConvTensors {
            x,
            w1,
            b1,
            w3,
            b3,
            gw,
            gb,
        }
    }

    /// Each tensor through `f` (e.g. from a backend to its inner one).
    pub fn map<C: Backend>(
        self,
        f: impl FnMut(FloatTensor<B>) -> FloatTensor<C>,
    ) -> DrConvTensors<C> {
        DrConvTensors::from_array(self.into_array().map(f))
    }
}

/// DRConv's forward and backward as backend operations. Implemented for burn's cubecl backend
/// (our WGSL kernels on a wgpu device registered with drconv), its fusion wrapper and autodiff;
/// other backends never receive these calls ([`super::DrConv2d`] takes burn's ops there).
#[backend_extension(Cube, Autodiff, Fusion)]
pub trait DrConvOps: Backend {
    /// The layer's output, B x O x H' x W'.
    #[fusion(meta = forward_meta)]
    fn drconv_forward(
        #[extension_type] tensors: DrConvTensors<Self>,
        call: KernelCall,
    ) -> FloatTensor<Self>;

    /// dL/d of each of `tensors` at the training forward of `tensors` for the upstream gradient
    /// `grad` (dL/d output).
    #[fusion(meta = backward_meta)]
    fn drconv_backward(
        #[extension_type] tensors: DrConvTensors<Self>,
        grad: FloatTensor<Self>,
        call: KernelCall,
    ) -> DrConvTensors<Self>;
}

/// The output's shape (the module checked it before the call) and x's dtype.
fn forward_meta(tensors: &DrConvTensorsMetadata, call: &KernelCall) -> TensorSpec {
    let config = call.runtime.config();
    let shape = config
        .forward_shape(tensors.x.shape.as_slice())
        .map(|s| s.output(config))
        .expect("the module checks the input shape before the call");
    TensorSpec::new(burn::tensor::Shape::from(shape), tensors.x.dtype)
}

/// Every gradient has its tensor's shape and dtype.
fn backward_meta(
    tensors: &DrConvTensorsMetadata,
    _grad: &TensorSpec,
    _call: &KernelCall,
) -> DrConvTensorsMetadata {
    tensors.clone()
}
