//! burn-onnx's hook for the `drconv.DRConv2d` node (feature `onnx`): a PyTorch model exported
//! with `python/drconv_onnx.py` becomes a burn model whose DRConv layers are
//! [`crate::burn::DrConv2dFn`] (the layer without parameters; its weights are the graph's
//! constants, stored once), on our kernels where the device is registered with drconv.
//!
//! In the model crate's `build.rs` (its `[build-dependencies]`: `burn-onnx` and drconv with
//! feature `onnx`; its `[dependencies]`: `burn` and drconv with feature `burn`):
//!
//! ```no_run
//! use burn_onnx::ModelGen;
//!
//! ModelGen::new()
//!     .input("model.onnx")
//!     .register_custom_op(drconv::onnx::DrConv2dOp)
//!     .out_dir("model/")
//!     .run_from_script();
//! ```
//!
//! The node (domain `drconv`, version 1): inputs `x` and the layer's six parameters as
//! initializers, in `state_dict` order (`conv_kernel.1.weight`, `conv_kernel.1.bias`,
//! `conv_kernel.3.weight`, `conv_kernel.3.bias`, `conv_guide.weight`, `conv_guide.bias`);
//! attributes `kernel_size`, `region_num` (required), `stride`, `padding`, `dilation` (ints,
//! default 1, 0, 1). Anything else (a missing or computed weight, a wrong shape, an unknown or
//! out-of-range attribute, a non-float input) fails the build with a message naming the node,
//! the tensor or attribute, and the value.

use burn_onnx::ext::proc_macro2::{Ident, Span, TokenStream};
use burn_onnx::ext::quote::quote;
use burn_onnx::ext::{
    arg_to_ident, ArgType, Argument, AttrKind, CodegenContext, CustomNode, DType, Field,
    OpsetRange, ProcessError, TensorType,
};

use crate::config::DrConvConfig;
use crate::params::ParamId;

/// The ONNX domain of the node.
pub const DOMAIN: &str = "drconv";
/// The node's op type.
pub const OP_TYPE: &str = "DRConv2d";
/// The node's attributes: name and default (`None`: required).
const ATTRIBUTES: [(&str, Option<i64>); 5] = [
    ("kernel_size", None),
    ("region_num", None),
    ("stride", Some(1)),
    ("padding", Some(0)),
    ("dilation", Some(1)),
];

/// burn-onnx's [`CustomOp`](burn_onnx::ext::CustomOp) for `drconv.DRConv2d`: register it with
/// `ModelGen::register_custom_op(DrConv2dOp)` (see the [module docs](self)).
#[derive(Debug, Clone, Copy, Default)]
pub struct DrConv2dOp;

/// An error attributed to one node.
fn node_error(node: &CustomNode, what: String) -> ProcessError {
    ProcessError::Custom(format!("{DOMAIN}.{OP_TYPE} node `{}`: {what}", node.name))
}

/// One integer attribute: its value, its default, or an error naming it.
fn attribute(node: &CustomNode, name: &str, default: Option<i64>) -> Result<usize, ProcessError> {
    let value = match (node.attrs.kind(name), default) {
        (None, Some(d)) => d,
        (None, None) => return Err(node_error(node, format!("lacks the attribute `{name}`"))),
        (Some(AttrKind::Int64), _) => node.attrs.get_i64(name).unwrap_or_default(),
        (Some(kind), _) => {
            return Err(node_error(
                node,
                format!("attribute `{name}` is {kind:?}, expected one INT"),
            ))
        }
    };
    usize::try_from(value)
        .map_err(|_| node_error(node, format!("attribute `{name}` is {value}, must be >= 0")))
}

/// The layer's configuration: attributes checked, channels read from the weights' shapes.
fn layer_config(node: &CustomNode) -> Result<DrConvConfig, ProcessError> {
    if let Some(unknown) = node
        .attrs
        .names()
        .find(|n| ATTRIBUTES.iter().all(|(a, _)| a != n))
    {
        let known: Vec<&str> = ATTRIBUTES.iter().map(|(a, _)| *a).collect();
        return Err(node_error(
            node,
            format!("unknown attribute `{unknown}` (the node takes {known:?})"),
        ));
    }
    let [k, r, s, p, d] = ATTRIBUTES.map(|(name, default)| attribute(node, name, default));
    let (k, r, s, p, d) = (k?, r?, s?, p?, d?);
    let (i, o) = channels(node, k, r)?;
    DrConvConfig::new(i, o, k, r)
        .and_then(|c| c.with_stride(s))
        .and_then(|c| c.with_padding(p))
        .and_then(|c| c.with_dilation(d))
        .and_then(|c| c.validate().map(|()| c))
        .map_err(|e| node_error(node, e.to_string()))
}

/// The six weights, checked present (as initializers) and in `state_dict` order.
fn weights(node: &CustomNode) -> Result<&[Argument], ProcessError> {
    let names: Vec<&str> = ParamId::ALL.iter().map(|p| p.name()).collect();
    if node.inputs.len() != 1 + names.len() {
        let which = match names.get(node.inputs.len().saturating_sub(1)..) {
            Some(missing) if !missing.is_empty() => format!("missing {missing:?}"),
            _ => "more than the layer has".into(),
        };
        return Err(node_error(
            node,
            format!(
                "has {} inputs, expected 7 (x and {names:?}): {which}",
                node.inputs.len()
            ),
        ));
    }
    let weights = &node.inputs[1..];
    for (arg, param) in weights.iter().zip(ParamId::ALL) {
        // Initializers reach a custom node as constants (onnx-ir lifts them only for its own
        // operators): anything computed at run time cannot become the module's parameter.
        if arg.is_dynamic() || arg.is_optional() {
            return Err(node_error(
                node,
                format!(
                    "input `{}` ({}) is computed at run time (a graph input or a node's \
                     output); it must be an initializer",
                    arg.name,
                    param.name()
                ),
            ));
        }
        match &arg.ty {
            ArgType::Tensor(t) if t.dtype == DType::F32 => {}
            other => {
                return Err(node_error(
                    node,
                    format!(
                        "weight `{}` ({}) is {other:?}; the layer takes f32 weights \
                         (export the model after `model.float()`)",
                        arg.name,
                        param.name()
                    ),
                ))
            }
        }
    }
    Ok(weights)
}

/// A weight's shape, known at build time.
fn weight_shape(node: &CustomNode, arg: &Argument) -> Result<Vec<usize>, ProcessError> {
    arg.ty
        .static_shape_known()
        .ok_or_else(|| node_error(node, format!("weight `{}` has no known shape", arg.name)))
}

/// (in, out) channels from `conv_guide.weight` (r x I x k x k) and `conv_kernel.3.bias`
/// (r*I*O); every weight's shape is then checked against the configuration's.
fn channels(node: &CustomNode, k: usize, r: usize) -> Result<(usize, usize), ProcessError> {
    let weights = weights(node)?;
    let guide = weight_shape(node, &weights[ParamId::GuideW.index()])?;
    let bias3 = weight_shape(node, &weights[ParamId::KernelB3.index()])?;
    let i = guide.get(1).copied().unwrap_or(0);
    let o = match bias3.as_slice() {
        [n] if r * i > 0 && n % (r * i) == 0 => n / (r * i),
        _ => 0,
    };
    if i == 0 || o == 0 {
        return Err(node_error(
            node,
            format!(
                "cannot read the channels: conv_guide.weight `{}` has shape {guide:?} \
                 (expected [r={r}, I, k={k}, k={k}]), conv_kernel.3.bias `{}` has shape \
                 {bias3:?} (expected [r*I*O])",
                weights[ParamId::GuideW.index()].name,
                weights[ParamId::KernelB3.index()].name
            ),
        ));
    }
    let config = DrConvConfig::new(i, o, k, r).map_err(|e| node_error(node, e.to_string()))?;
    for (arg, param) in weights.iter().zip(ParamId::ALL) {
        let (got, want) = (weight_shape(node, arg)?, config.param_shape(param));
        if got != want {
            return Err(node_error(
                node,
                format!(
                    "weight `{}` ({}) has shape {got:?}, expected {want:?} for \
                     DRConv2d(in={i}, out={o}, k={k}, r={r})",
                    arg.name,
                    param.name()
                ),
            ));
        }
    }
    Ok((i, o))
}

/// The input: a float tensor of rank 4 with `in_channels` channels where its shape is known.
fn input_type<'n>(
    node: &'n CustomNode,
    config: &DrConvConfig,
) -> Result<&'n TensorType, ProcessError> {
    let x = node
        .inputs
        .first()
        .ok_or_else(|| node_error(node, "has no inputs".into()))?;
    let t = match &x.ty {
        ArgType::Tensor(t) if t.rank == 4 && t.dtype.is_float() => t,
        other => {
            return Err(node_error(
                node,
                format!(
                    "input `{}` is {other:?}; expected a float tensor of rank 4",
                    x.name
                ),
            ))
        }
    };
    let c = t
        .static_shape
        .as_ref()
        .and_then(|s| s.get(1).copied().flatten());
    if let Some(c) = c.filter(|&c| c != config.in_channels) {
        return Err(node_error(
            node,
            format!(
                "input `{}` has {c} channels, the weights take in_channels = {}",
                x.name, config.in_channels
            ),
        ));
    }
    Ok(t)
}

/// The output's type: batch as the input's, `out_channels`, and the layer's spatial arithmetic
/// where the input's size is known.
fn output_type(node: &CustomNode) -> Result<TensorType, ProcessError> {
    let config = layer_config(node)?;
    let x = input_type(node, &config)?;
    let static_shape = match &x.static_shape {
        Some(shape) if shape.len() == 4 => {
            let spatial = |n: Option<usize>, axis: &str| {
                n.map(|n| config.out_len(n, axis))
                    .transpose()
                    .map_err(|e| node_error(node, e.to_string()))
            };
            Some(vec![
                shape[0],
                Some(config.out_channels),
                spatial(shape[2], "height")?,
                spatial(shape[3], "width")?,
            ])
        }
        _ => None,
    };
    Ok(TensorType::new(x.dtype, 4, static_shape))
}

impl burn_onnx::ext::CustomOp for DrConv2dOp {
    fn op_type(&self) -> &str {
        OP_TYPE
    }

    fn domain(&self) -> &str {
        DOMAIN
    }

    fn opset_range(&self) -> OpsetRange {
        OpsetRange {
            min: 1,
            max: Some(1),
        }
    }

    fn infer_output_types(&self, node: &CustomNode) -> Result<Vec<ArgType>, ProcessError> {
        if node.outputs.len() != 1 {
            return Err(node_error(
                node,
                format!("has {} outputs, expected 1", node.outputs.len()),
            ));
        }
        Ok(vec![ArgType::Tensor(output_type(node)?)])
    }

    fn forward(
        &self,
        node: &CustomNode,
        ctx: &mut CodegenContext<'_, '_>,
    ) -> Result<TokenStream, ProcessError> {
        let input = ctx.arg(&node.inputs[0]);
        let [w1, b1, w3, b3, gw, gb] = [1, 2, 3, 4, 5, 6].map(|i| ctx.arg(&node.inputs[i]));
        let output = arg_to_ident(&node.outputs[0]);
        let field = Ident::new(&node.name, Span::call_site());
        Ok(quote! {
            let #output = self.#field.forward(
                #input,
                drconv::burn::Weights { w1: #w1, b1: #b1, w3: #w3, b3: #b3, gw: #gw, gb: #gb },
            );
        })
    }

    /// The layer without parameters: its weights are the graph's constants (onnx-ir makes the
    /// initializers constants, which burn-onnx stores and loads), passed to each forward, so
    /// each is stored once.
    fn field(&self, node: &CustomNode) -> Result<Option<Field>, ProcessError> {
        let c = layer_config(node)?;
        let name = Ident::new(&node.name, Span::call_site());
        let (i, o, k, r) = (c.in_channels, c.out_channels, c.kernel_size, c.region_num);
        let (s, p, d) = (c.stride, c.padding, c.dilation);
        Ok(Some(Field::new(
            &node.name,
            quote! { drconv::burn::DrConv2dFn },
            quote! {
                let #name = drconv::burn::DrConv2dConfig::new(#i, #o, #k, #r)
                    .with_stride(#s)
                    .with_padding(#p)
                    .with_dilation(#d)
                    .init_fn();
            },
        )))
    }
}
