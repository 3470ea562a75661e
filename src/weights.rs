//! Loading and saving DRConv2d parameters as safetensors, with the reference module's
//! `state_dict()` names and shapes (what `safetensors.torch.save_file(module.state_dict())`
//! writes for the PyTorch `DRConv2d`):
//!
//! | name                   | shape           |
//! |------------------------|-----------------|
//! | `conv_kernel.1.weight` | `r*r x I x 1 x 1` |
//! | `conv_kernel.1.bias`   | `r*r`           |
//! | `conv_kernel.3.weight` | `r*I*O x r x 1 x 1` |
//! | `conv_kernel.3.bias`   | `r*I*O`         |
//! | `conv_guide.weight`    | `r x I x k x k` |
//! | `conv_guide.bias`      | `r`             |
//!
//! F32, F16 and BF16 tensors are accepted (converted to f32); every other dtype is refused.
//! Every reader also takes a PyTorch checkpoint (`torch.save`'s zip format: a `state_dict`, a
//! pickled model or a training checkpoint holding one), read by [`crate::pytorch`] without
//! Python and named as the model's `state_dict` names its tensors.
//! Loading never panics on malformed input: every problem (truncated or corrupt file, missing,
//! extra or misshapen tensor, unsupported dtype) is a [`DrConvError::Weights`] naming the tensor.
//! Values themselves are not checked: NaN and infinities load as they are.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::config::DrConvConfig;
use crate::error::{DrConvError, Result};
use crate::params::{DrConvParams, ParamId};

/// Metadata key under which [`save_safetensors_bytes`] stores the layer's [`DrConvConfig`] as JSON.
pub const CONFIG_METADATA_KEY: &str = "drconv.config";

/// How many tensor names an error message lists before eliding the rest.
const MAX_LISTED: usize = 20;

/// Loads the six DRConv2d tensors from safetensors bytes holding exactly those six tensors
/// (the reference module's `state_dict()`), checking every shape against `config`.
///
/// A file with any other tensor is refused, naming it; for a DRConv2d inside a larger model
/// (keys like `neck.drconv.conv_guide.weight`) use [`load_safetensors_with_prefix`].
pub fn load_safetensors_bytes(config: &DrConvConfig, bytes: &[u8]) -> Result<DrConvParams> {
    load_impl(config, bytes, "", true)
}

/// [`load_safetensors_bytes`] on the contents of the file at `path`.
pub fn load_safetensors(config: &DrConvConfig, path: impl AsRef<Path>) -> Result<DrConvParams> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| DrConvError::io(path, e))?;
    load_safetensors_bytes(config, &bytes).map_err(|e| in_file(e, path))
}

/// Loads the six tensors named `prefix + name` (e.g. `prefix = "neck.drconv."`) out of a larger
/// model file; every tensor not of that form is ignored. Shapes and dtypes are checked as in
/// [`load_safetensors_bytes`]. The prefix is used verbatim: include the trailing `.`.
pub fn load_safetensors_with_prefix(
    config: &DrConvConfig,
    bytes: &[u8],
    prefix: &str,
) -> Result<DrConvParams> {
    load_impl(config, bytes, prefix, false)
}

/// Deduces `in_channels`, `out_channels`, `kernel_size` and `region_num` from the tensor shapes
/// of a file holding the reference's six tensors (other tensors are ignored here; the loaders
/// check for them): `r` from `conv_guide.bias`, `I` and `k` from `conv_guide.weight`, and
/// `O = len(conv_kernel.3.bias) / (r*I)`. Stride, padding and dilation are not stored in the
/// tensors and must be given. Every one of the six shapes is then checked against the result.
pub fn infer_config(
    bytes: &[u8],
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Result<DrConvConfig> {
    infer_config_with_prefix(bytes, "", stride, padding, dilation)
}

/// [`infer_config`] for the tensors named `prefix + name` inside a larger model file.
pub fn infer_config_with_prefix(
    bytes: &[u8],
    prefix: &str,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Result<DrConvConfig> {
    let bytes = &*as_safetensors(bytes)?;
    let st = open(bytes)?;
    let shape_of = |id: ParamId| -> Result<Vec<usize>> {
        let full = format!("{prefix}{}", id.name());
        let view = st
            .tensor(&full)
            .map_err(|_| missing_error(&st, &full, prefix))?;
        Ok(view.shape().to_vec())
    };
    let guide_b = shape_of(ParamId::GuideB)?;
    let guide_w = shape_of(ParamId::GuideW)?;
    let kernel_b3 = shape_of(ParamId::KernelB3)?;
    let gb = format!("{prefix}{}", ParamId::GuideB.name());
    let gw = format!("{prefix}{}", ParamId::GuideW.name());
    let kb3 = format!("{prefix}{}", ParamId::KernelB3.name());

    let r = match guide_b.as_slice() {
        [r] if *r > 0 => *r,
        _ => {
            return Err(DrConvError::Weights(format!(
                "cannot infer region_num: `{gb}` has shape {guide_b:?}, expected [r] with r >= 1"
            )))
        }
    };
    let (i, k) = match guide_w.as_slice() {
        [gr, i, k, k2] if *gr == r && *i > 0 && *k > 0 && k == k2 => (*i, *k),
        _ => {
            return Err(DrConvError::Weights(format!(
                "cannot infer in_channels and kernel_size: `{gw}` has shape {guide_w:?}, expected \
                 [r, I, k, k] with r = {r} (from `{gb}`), I >= 1 and a square kernel k >= 1"
            )))
        }
    };
    // r * I divides r*I*k*k, the element count of a tensor the file holds, so it cannot overflow;
    // checked anyway so that no input can panic.
    let ri = r.checked_mul(i).ok_or_else(|| {
        DrConvError::Weights(format!("`{gw}` shape {guide_w:?}: r * I overflows"))
    })?;
    let o = match kernel_b3.as_slice() {
        [n] if *n > 0 && n % ri == 0 => n / ri,
        _ => {
            return Err(DrConvError::Weights(format!(
                "cannot infer out_channels: `{kb3}` has shape {kernel_b3:?}, expected [r*I*O] \
                 with r*I = {r}*{i} = {ri} dividing it and O >= 1"
            )))
        }
    };
    let config = DrConvConfig {
        in_channels: i,
        out_channels: o,
        kernel_size: k,
        region_num: r,
        stride,
        padding,
        dilation,
    };
    config.validate()?;
    for id in ParamId::ALL {
        let got = shape_of(id)?;
        let want = config.param_shape(id);
        if got != want {
            return Err(DrConvError::Weights(format!(
                "`{prefix}{}` has shape {got:?}, but in={i}, out={o}, k={k}, r={r} (inferred from \
                 `{gb}`, `{gw}` and `{kb3}`) needs {want:?}: the tensors are inconsistent",
                id.name()
            )));
        }
    }
    Ok(config)
}

/// One DRConv2d layer found in a model file by [`find_layers`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct FoundLayer {
    /// What precedes the six names, e.g. `"neck.drconv."` (`""` for a lone layer's file); pass
    /// it to [`load_safetensors_with_prefix`].
    pub prefix: String,
    /// Input channels `I`.
    pub in_channels: usize,
    /// Output channels `O`.
    pub out_channels: usize,
    /// Kernel size `k`.
    pub kernel_size: usize,
    /// Regions `r`.
    pub region_num: usize,
    /// Values in the six tensors together.
    pub parameters: usize,
}

impl FoundLayer {
    /// The layer's configuration with the given stride, padding and dilation (which the
    /// tensors do not record).
    pub fn config(&self, stride: usize, padding: usize, dilation: usize) -> Result<DrConvConfig> {
        DrConvConfig::new(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.region_num,
        )?
        .with_stride(stride)?
        .with_padding(padding)?
        .with_dilation(dilation)
    }
}

/// Every DRConv2d layer in a safetensors model file (a whole checkpoint's `state_dict`, e.g. a
/// YOLO model with DRConv blocks in its neck), in the file's name order: each prefix under which
/// all six of the reference's tensors are present, with the sizes their shapes give. A prefix
/// with some but not all six, or with shapes that do not fit together, is an error naming it.
/// Stride, padding and dilation are not in the tensors: the model's code knows them.
///
/// ```
/// use drconv::{weights, DrConvConfig, DrConvParams};
/// # fn main() -> drconv::Result<()> {
/// let params = DrConvParams::init(DrConvConfig::new(8, 16, 3, 4)?, 0)?;
/// let bytes = weights::save_safetensors_bytes(&params)?;
/// let found = weights::find_layers(&bytes)?;
/// assert_eq!(found.len(), 1);
/// assert_eq!((found[0].in_channels, found[0].out_channels, found[0].region_num), (8, 16, 4));
/// # Ok(()) }
/// ```
pub fn find_layers(bytes: &[u8]) -> Result<Vec<FoundLayer>> {
    let bytes = &*as_safetensors(bytes)?;
    let st = open(bytes)?;
    let marker = ParamId::GuideB.name();
    let mut prefixes: Vec<&str> = st
        .names()
        .into_iter()
        .filter_map(|n| n.strip_suffix(marker))
        .filter(|p| p.is_empty() || p.ends_with('.'))
        .collect();
    prefixes.sort_unstable();
    prefixes
        .into_iter()
        .map(|prefix| {
            let c = infer_config_with_prefix(bytes, prefix, 1, 0, 1)?;
            Ok(FoundLayer {
                prefix: prefix.to_string(),
                in_channels: c.in_channels,
                out_channels: c.out_channels,
                kernel_size: c.kernel_size,
                region_num: c.region_num,
                parameters: ParamId::ALL
                    .iter()
                    .map(|&id| c.param_shape(id).iter().product::<usize>())
                    .sum(),
            })
        })
        .collect()
}

/// The [`DrConvConfig`] that [`save_safetensors_bytes`] stored in the file's metadata, if any.
/// `Ok(None)` when the file has no such entry (e.g. it was written by PyTorch); an error when the
/// file is not valid safetensors or the entry is not a valid config.
pub fn saved_config(bytes: &[u8]) -> Result<Option<DrConvConfig>> {
    if crate::pytorch::is_checkpoint(bytes) {
        return Ok(None);
    }
    let (_, metadata) = SafeTensors::read_metadata(checked(bytes)?).map_err(corrupt)?;
    let Some(json) = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get(CONFIG_METADATA_KEY))
    else {
        return Ok(None);
    };
    let config: DrConvConfig = serde_json::from_str(json).map_err(|e| {
        DrConvError::Weights(format!(
            "metadata `{CONFIG_METADATA_KEY}` is not a valid DrConvConfig: {e}"
        ))
    })?;
    Ok(Some(config))
}

/// Serializes the parameters as f32 safetensors with the reference's names and shapes, plus the
/// metadata `{"format": "pt", "drconv.config": <config as JSON>}` (so that
/// `safetensors.torch.load_file` + `module.load_state_dict` read it back in PyTorch).
pub fn save_safetensors_bytes(params: &DrConvParams) -> Result<Vec<u8>> {
    params.config.validate()?;
    let mut buffers = Vec::with_capacity(ParamId::ALL.len());
    for id in ParamId::ALL {
        let shape = params.shape(id);
        let n: usize = shape.iter().product();
        let values = params.get(id);
        if values.len() != n {
            return Err(DrConvError::Weights(format!(
                "cannot save `{}`: it has {} values but shape {shape:?} needs {n}",
                id.name(),
                values.len()
            )));
        }
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        buffers.push((id, shape, bytes));
    }
    let mut views = Vec::with_capacity(buffers.len());
    for (id, shape, bytes) in &buffers {
        let view = TensorView::new(Dtype::F32, shape.clone(), bytes)
            .map_err(|e| DrConvError::Weights(format!("cannot save `{}`: {e}", id.name())))?;
        views.push((id.name(), view));
    }
    let config_json = serde_json::to_string(&params.config)
        .map_err(|e| DrConvError::Weights(format!("cannot serialize the config: {e}")))?;
    let metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        (CONFIG_METADATA_KEY.to_string(), config_json),
    ]);
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| DrConvError::Weights(format!("cannot serialize safetensors: {e}")))
}

/// [`save_safetensors_bytes`] written to `path` (replacing any existing file).
pub fn save_safetensors(params: &DrConvParams, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let bytes = save_safetensors_bytes(params)?;
    std::fs::write(path, bytes).map_err(|e| DrConvError::io(path, e))
}

fn load_impl(
    config: &DrConvConfig,
    bytes: &[u8],
    prefix: &str,
    exact: bool,
) -> Result<DrConvParams> {
    config.validate()?;
    let bytes = &*as_safetensors(bytes)?;
    let st = open(bytes)?;

    // Missing tensors first (the most common mistake), then unexpected ones.
    for id in ParamId::ALL {
        let full = format!("{prefix}{}", id.name());
        if st.tensor(&full).is_err() {
            return Err(missing_error(&st, &full, prefix));
        }
    }
    if exact {
        let mut extra: Vec<&str> = st
            .names()
            .into_iter()
            .filter(|n| ParamId::from_name(n).is_none())
            .collect();
        extra.sort_unstable();
        if let Some(first) = extra.first() {
            return Err(DrConvError::Weights(format!(
                "unexpected tensor `{first}` (a DRConv2d state_dict has only {}); unexpected: {}{}",
                ParamId::ALL.map(|p| format!("`{}`", p.name())).join(", "),
                list(&extra),
                prefix_hint(&st, prefix)
            )));
        }
    }

    let mut values: [Vec<f32>; 6] = Default::default();
    for id in ParamId::ALL {
        let full = format!("{prefix}{}", id.name());
        let view = st
            .tensor(&full)
            .map_err(|_| missing_error(&st, &full, prefix))?;
        let want = config.param_shape(id);
        if view.shape() != want.as_slice() {
            return Err(DrConvError::Weights(format!(
                "`{full}` has shape {:?} but DRConv2d(in={}, out={}, k={}, r={}) needs {want:?}",
                view.shape(),
                config.in_channels,
                config.out_channels,
                config.kernel_size,
                config.region_num
            )));
        }
        let n: usize = want.iter().product();
        values[id.index()] = to_f32(&full, &view, n)?;
    }

    if prefix.is_empty() {
        warn_on_config_mismatch(config, bytes);
    }
    DrConvParams::from_values(*config, values)
}

/// Logs a warning when the file's metadata records a different config (e.g. another stride,
/// which the tensor shapes cannot reveal). The metadata is optional, so this is never an error.
fn warn_on_config_mismatch(config: &DrConvConfig, bytes: &[u8]) {
    match saved_config(bytes) {
        Ok(Some(saved)) if saved != *config => log::warn!(
            "loading DRConv2d weights with {config:?}, but the file's `{CONFIG_METADATA_KEY}` \
             metadata records {saved:?}"
        ),
        Err(e) => log::warn!("ignoring the file's `{CONFIG_METADATA_KEY}` metadata: {e}"),
        _ => {}
    }
}

/// `bytes` as safetensors: themselves, or a PyTorch checkpoint's tensors converted; PyTorch's
/// legacy format is refused with the one-line conversion.
pub fn as_safetensors(bytes: &[u8]) -> Result<Cow<'_, [u8]>> {
    use crate::pytorch;
    if pytorch::is_checkpoint(bytes) {
        return Ok(Cow::Owned(pytorch::checkpoint_to_safetensors(bytes)?));
    }
    if pytorch::is_legacy(bytes) {
        return Err(DrConvError::Weights(format!(
            "a PyTorch file in the legacy format (torch.save before PyTorch 1.6, or with \
             _use_new_zipfile_serialization=False): re-save it with torch.save in PyTorch >= \
             1.6, or convert it to safetensors: {}",
            pytorch::CONVERSION
        )));
    }
    Ok(Cow::Borrowed(bytes))
}

/// Opens `bytes` as safetensors, with every structural problem reported as a `Weights` error.
fn open(bytes: &[u8]) -> Result<SafeTensors<'_>> {
    SafeTensors::deserialize(checked(bytes)?).map_err(corrupt)
}

fn corrupt(e: safetensors::SafeTensorError) -> DrConvError {
    DrConvError::Weights(format!(
        "not a valid safetensors file (truncated or corrupt?): {e}"
    ))
}

/// Checks, before handing the bytes to the safetensors crate, that every tensor's
/// `data_offsets` lie inside the data section. The crate validates the offsets against each
/// other and the file length, but with an unchecked `end + 8 + header_len` that overflows (and
/// panics in builds with overflow checks) for offsets near `usize::MAX`, so those are refused
/// here first.
/// Anything this pre-check cannot parse is left to the crate, which reports it.
fn checked(bytes: &[u8]) -> Result<&[u8]> {
    let Some(len_bytes) = bytes.get(..8) else {
        return Ok(bytes);
    };
    let mut n = [0u8; 8];
    n.copy_from_slice(len_bytes);
    let header_len = u64::from_le_bytes(n);
    let available = (bytes.len() - 8) as u64;
    if header_len > available {
        return Err(DrConvError::Weights(format!(
            "not a valid safetensors file (truncated or corrupt?): the header claims {header_len} \
             bytes but only {available} follow the length prefix"
        )));
    }
    let header_len = header_len as usize; // <= bytes.len()
    let data_len = (available as usize) - header_len;
    let Ok(header) = serde_json::from_slice::<serde_json::Value>(&bytes[8..8 + header_len]) else {
        return Ok(bytes);
    };
    let Some(entries) = header.as_object() else {
        return Ok(bytes);
    };
    for (name, info) in entries {
        if name == "__metadata__" {
            continue;
        }
        let Some(offsets) = info.get("data_offsets").and_then(|v| v.as_array()) else {
            continue;
        };
        for off in offsets {
            if let Some(off) = off.as_u64() {
                if off > data_len as u64 {
                    return Err(DrConvError::Weights(format!(
                        "not a valid safetensors file (truncated or corrupt?): tensor `{name}` has \
                         data offset {off} beyond the {data_len}-byte data section"
                    )));
                }
            }
        }
    }
    Ok(bytes)
}

/// Converts a tensor of `n` elements to f32, refusing dtypes other than F32, F16 and BF16.
fn to_f32(name: &str, view: &TensorView<'_>, n: usize) -> Result<Vec<f32>> {
    let data = view.data();
    let width = match view.dtype() {
        Dtype::F32 => 4,
        Dtype::F16 | Dtype::BF16 => 2,
        other => {
            return Err(DrConvError::Weights(format!(
                "`{name}` has dtype {other}; only F32, F16 and BF16 are supported \
                 (convert it to float32 before saving)"
            )))
        }
    };
    // The safetensors crate guarantees this; checked so a violation is an error, not a panic.
    if n.checked_mul(width) != Some(data.len()) {
        return Err(DrConvError::Weights(format!(
            "`{name}` has {} data bytes but {n} {} values need {}",
            data.len(),
            view.dtype(),
            n.saturating_mul(width)
        )));
    }
    Ok(match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
            .collect(),
        _ => data
            .chunks_exact(2)
            .map(|c| half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
            .collect(),
    })
}

fn missing_error(st: &SafeTensors<'_>, full: &str, prefix: &str) -> DrConvError {
    let mut names = st.names();
    names.sort_unstable();
    let present = if prefix.is_empty() {
        format!("the file holds: {}", list(&names))
    } else {
        let under: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| n.starts_with(prefix))
            .collect();
        if under.is_empty() {
            format!(
                "no tensor starts with `{prefix}` ({} tensors in the file)",
                names.len()
            )
        } else {
            format!("tensors under `{prefix}`: {}", list(&under))
        }
    };
    DrConvError::Weights(format!(
        "missing tensor `{full}`; {present}{}",
        prefix_hint(st, prefix)
    ))
}

/// Prefixes (other than `current`) under which the file holds a `conv_guide.weight`, as a hint
/// for the prefix loader.
fn prefix_hint(st: &SafeTensors<'_>, current: &str) -> String {
    let suffix = ParamId::GuideW.name();
    let prefixes: BTreeSet<&str> = st
        .names()
        .into_iter()
        .filter_map(|n| n.strip_suffix(suffix))
        .filter(|p| !p.is_empty() && p.ends_with('.') && *p != current)
        .collect();
    if prefixes.is_empty() {
        return String::new();
    }
    let prefixes: Vec<&str> = prefixes.into_iter().collect();
    format!(
        "; the file has DRConv2d tensors under the prefix(es) {}: use \
         load_safetensors_with_prefix",
        list(&prefixes)
    )
}

/// `a`, `b`, ... with at most [`MAX_LISTED`] names.
fn list(names: &[&str]) -> String {
    if names.is_empty() {
        return "(none)".to_string();
    }
    let mut s = names
        .iter()
        .take(MAX_LISTED)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > MAX_LISTED {
        s.push_str(&format!(" and {} more", names.len() - MAX_LISTED));
    }
    s
}

/// Adds the file name to a `Weights` error from a path-based loader.
fn in_file(e: DrConvError, path: &Path) -> DrConvError {
    match e {
        DrConvError::Weights(m) => DrConvError::Weights(format!("{}: {m}", path.display())),
        other => other,
    }
}
