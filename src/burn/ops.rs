//! The burn backend extension: DRConv's forward and backward as two backend operations, so burn
//! routes them to our kernels on a wgpu device (`CubeBackend`, under burn's fusion) and records
//! them in its autodiff graph (`Autodiff<B>`).

use burn::backend::fusion::custom::TensorSpec;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, DType, ExtensionType};

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

/// The gradients of one backward: dL/dx and dL/d of the six parameters (state_dict order).
#[derive(ExtensionType)]
#[extension_type(fusion)]
pub struct DrConvGrads<B: burn::backend::Backend> {
    /// dL/dx.
    pub x: FloatTensor<B>,
    /// dL/d`conv_kernel.1.weight`.
    pub w1: FloatTensor<B>,
    /// dL/d`conv_kernel.1.bias`.
    pub b1: FloatTensor<B>,
    /// dL/d`conv_kernel.3.weight`.
    pub w3: FloatTensor<B>,
    /// dL/d`conv_kernel.3.bias`.
    pub b3: FloatTensor<B>,
    /// dL/d`conv_guide.weight`.
    pub gw: FloatTensor<B>,
    /// dL/d`conv_guide.bias`.
    pub gb: FloatTensor<B>,
}

/// DRConv's forward and backward as backend operations. Implemented for burn's cubecl backend
/// (our WGSL kernels on a wgpu device registered with drconv), its fusion wrapper and autodiff;
/// other backends never receive these calls ([`super::DrConv2d`] takes burn's ops there).
#[backend_extension(Cube, Autodiff, Fusion)]
pub trait DrConvOps: burn::backend::Backend {
    /// The layer's output, B x O x H' x W'.
    #[allow(clippy::too_many_arguments)]
    #[fusion(meta = forward_meta)]
    fn drconv_forward(
        x: FloatTensor<Self>,
        w1: FloatTensor<Self>,
        b1: FloatTensor<Self>,
        w3: FloatTensor<Self>,
        b3: FloatTensor<Self>,
        gw: FloatTensor<Self>,
        gb: FloatTensor<Self>,
        call: KernelCall,
    ) -> FloatTensor<Self>;

    /// The gradients of the training forward of `x` for the upstream gradient `grad`.
    #[allow(clippy::too_many_arguments)]
    #[fusion(meta = backward_meta)]
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
    ) -> DrConvGrads<Self>;
}

/// The output's shape (the module checked it before the call).
#[allow(clippy::too_many_arguments)]
fn forward_meta(
    x: &TensorSpec,
    _w1: &TensorSpec,
    _b1: &TensorSpec,
    _w3: &TensorSpec,
    _b3: &TensorSpec,
    _gw: &TensorSpec,
    _gb: &TensorSpec,
    call: &KernelCall,
) -> TensorSpec {
    let config = call.runtime.config();
    let shape = config
        .forward_shape(x.shape.as_slice())
        .map(|s| s.output(config))
        .expect("the module checks the input shape before the call");
    TensorSpec::new(burn::tensor::Shape::from(shape), DType::F32)
}

/// Every gradient has its tensor's shape.
#[allow(clippy::too_many_arguments)]
fn backward_meta(
    x: &TensorSpec,
    w1: &TensorSpec,
    b1: &TensorSpec,
    w3: &TensorSpec,
    b3: &TensorSpec,
    gw: &TensorSpec,
    gb: &TensorSpec,
    _grad: &TensorSpec,
    _call: &KernelCall,
) -> DrConvGradsMetadata {
    DrConvGradsMetadata {
        x: x.clone(),
        w1: w1.clone(),
        b1: b1.clone(),
        w3: w3.clone(),
        b3: b3.clone(),
        gw: gw.clone(),
        gb: gb.clone(),
    }
}
