//! PyTorch checkpoints (`torch.save`'s zip format, PyTorch >= 1.6) read without Python: a
//! `state_dict`, a whole pickled model (`torch.save(model)`) or a training checkpoint holding
//! either (YOLOv5's `{'model': ..., 'ema': ..., 'optimizer': ...}`). Nothing in the file is run:
//! the pickle is read into a tree (`pickle`), in which tensors are the calls to
//! `torch._utils._rebuild_tensor_v2` on a storage, and a module's tensors are named as its
//! `state_dict` names them (`_parameters`, `_buffers` and `_modules`, joined by `.`), below the
//! keys of the dicts that hold it. [`checkpoint_to_safetensors`] turns them into safetensors
//! bytes, which every loader of [`crate::weights`] reads.

mod pickle;
mod zip;

use std::collections::{HashMap, HashSet};

use safetensors::tensor::TensorView;
use safetensors::Dtype;

use crate::error::{DrConvError, Result};
use pickle::{Object, Value};

/// One tensor of a checkpoint, contiguous, in its own dtype.
#[derive(Debug, Clone)]
pub struct CheckpointTensor {
    /// Its `state_dict` name, below the keys of the dicts that hold its module.
    pub name: String,
    /// Its storage's element type (`torch.HalfStorage`: F16, ...).
    pub dtype: Dtype,
    /// Its size, as `tensor.shape`.
    pub shape: Vec<usize>,
    /// Little-endian values, row-major.
    pub data: Vec<u8>,
}

/// The one-line conversion for what this module cannot read.
pub const CONVERSION: &str = "python -c \"import sys, torch, safetensors.torch as st; \
    sd = torch.load(sys.argv[1], map_location='cpu', weights_only=False); \
    sd = getattr(sd, 'state_dict', lambda: sd)(); \
    st.save_file({k: v.float().contiguous() for k, v in sd.items()}, sys.argv[2])\" MODEL.pt \
    MODEL.safetensors";

/// Whether `bytes` look like a `torch.save` zip checkpoint.
pub fn is_checkpoint(bytes: &[u8]) -> bool {
    zip::is_zip(bytes)
}

/// Whether `bytes` look like PyTorch's legacy (pre-1.6) serialization: a pickle whose first
/// value is its magic number.
pub fn is_legacy(bytes: &[u8]) -> bool {
    bytes.starts_with(&[
        0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8,
    ])
}

/// Every float and integer tensor of the checkpoint, in the order the pickle holds them; a name
/// met twice (a module referenced twice) is kept once.
pub fn read_checkpoint(bytes: &[u8]) -> Result<Vec<CheckpointTensor>> {
    let entries = zip::entries(bytes)?;
    let pkl = (entries.iter())
        .find(|e| e.name.ends_with("data.pkl") && e.name.matches('/').count() <= 1)
        .ok_or_else(|| bad("no data.pkl: not a torch.save archive (TorchScript?)".into()))?;
    let root = pkl
        .name
        .strip_suffix("data.pkl")
        .unwrap_or_default()
        .to_string();
    if let Some(order) = entries
        .iter()
        .find(|e| e.name == format!("{root}byteorder"))
    {
        if order.data != b"little" {
            return Err(bad("a big-endian checkpoint".into()));
        }
    }
    let files: HashMap<&str, &[u8]> = entries.iter().map(|e| (e.name.as_str(), e.data)).collect();
    let tree = pickle::load(pkl.data)?;
    let mut w = Walk {
        files,
        root,
        out: Vec::new(),
        names: HashSet::new(),
        limit: 8 * bytes.len() as u64,
        budget: 64 * pkl.data.len() as u64 + 4096,
    };
    w.walk(&tree, "", 0)?;
    Ok(w.out)
}

/// The checkpoint's tensors as safetensors bytes (names, dtypes and shapes kept).
pub fn checkpoint_to_safetensors(bytes: &[u8]) -> Result<Vec<u8>> {
    let tensors = read_checkpoint(bytes)?;
    let mut views = Vec::with_capacity(tensors.len());
    for t in &tensors {
        let view = TensorView::new(t.dtype, t.shape.clone(), &t.data)
            .map_err(|e| bad(format!("tensor `{}`: {e}", t.name)))?;
        views.push((t.name.clone(), view));
    }
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(metadata)).map_err(|e| bad(e.to_string()))
}

fn bad(what: String) -> DrConvError {
    DrConvError::Weights(format!("not a valid PyTorch checkpoint: {what}"))
}

/// The tree walk that names and reads the tensors.
struct Walk<'a> {
    files: HashMap<&'a str, &'a [u8]>,
    /// The archive's folder (`archive/`, or the name the file was saved under).
    root: String,
    out: Vec<CheckpointTensor>,
    names: HashSet<String>,
    /// Most bytes one tensor may take: 8 x the file (only a stride-0 storage can exceed it).
    limit: u64,
    /// Values the walk may still visit: 64 per byte of the pickle.
    budget: u64,
}

fn join(prefix: &str, key: &str) -> String {
    match prefix.is_empty() {
        true => key.to_string(),
        false => format!("{prefix}.{key}"),
    }
}

/// The strings of a pickled `set` (a call of `set` on a list, or the list itself).
fn set_names(v: &Value) -> Vec<String> {
    let list = match v {
        Value::Object(o) => o.borrow().args.first().and_then(Value::elements),
        v => v.elements(),
    };
    let names = list.unwrap_or_default();
    names
        .iter()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect()
}

/// A dict key as a name part: strings as they are, integers in decimal; others are skipped.
fn key_name(k: &Value) -> Option<String> {
    match k {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

impl Walk<'_> {
    fn walk(&mut self, v: &Value, name: &str, depth: usize) -> Result<()> {
        // The memo shares values: a crafted pickle of a few hundred bytes nests (x, x) a
        // hundred deep, 2^100 paths.
        self.budget = self.budget.checked_sub(1).ok_or_else(|| {
            bad("its values are shared along more paths than its size allows (crafted?)".into())
        })?;
        if depth > pickle::MAX_DEPTH {
            return Err(bad(format!(
                "nested deeper than {} at `{name}`",
                pickle::MAX_DEPTH
            )));
        }
        match v {
            Value::Dict(d) => {
                for (k, x) in d.borrow().iter() {
                    if let Some(key) = key_name(k) {
                        self.walk(x, &join(name, &key), depth + 1)?;
                    }
                }
            }
            Value::Tuple(_) | Value::List(_) => {
                let xs = v.elements().unwrap_or_default();
                for (i, x) in xs.iter().enumerate() {
                    self.walk(x, &join(name, &i.to_string()), depth + 1)?;
                }
            }
            Value::Object(o) => self.object(&o.borrow(), name, depth)?,
            _ => {}
        }
        Ok(())
    }

    /// A call's result: a tensor, a parameter (its tensor), a module (its state_dict's
    /// tensors) or another object (whatever its state and items hold).
    fn object(&mut self, o: &Object, name: &str, depth: usize) -> Result<()> {
        let rebuild = |f: &str| o.callable.is_global("torch._utils", f);
        if rebuild("_rebuild_tensor_v2") || rebuild("_rebuild_tensor") {
            return self.tensor(&o.args, name);
        }
        if rebuild("_rebuild_parameter") || rebuild("_rebuild_parameter_with_state") {
            return match o.args.first() {
                Some(t) => self.walk(t, name, depth + 1),
                None => Ok(()),
            };
        }
        if let Some(Value::Dict(state)) = &o.state {
            let state = state.borrow();
            let field = |f: &str| {
                state
                    .iter()
                    .find(|(k, _)| k.as_str() == Some(f))
                    .map(|kv| &kv.1)
            };
            if field("_modules").is_some() || field("_parameters").is_some() {
                // state_dict leaves out the buffers registered as not persistent.
                let skip = field("_non_persistent_buffers_set").map_or(Vec::new(), set_names);
                for f in ["_parameters", "_buffers", "_modules"] {
                    if let Some(Value::Dict(d)) = field(f) {
                        for (k, x) in d.borrow().iter() {
                            match key_name(k) {
                                Some(key) if !skip.contains(&key) => {
                                    self.walk(x, &join(name, &key), depth + 1)?
                                }
                                _ => {}
                            }
                        }
                    }
                }
                return Ok(());
            }
        }
        if let Some(s) = &o.state {
            self.walk(s, name, depth + 1)?;
        }
        for (k, x) in &o.items {
            if let Some(key) = key_name(k) {
                self.walk(x, &join(name, &key), depth + 1)?;
            }
        }
        Ok(())
    }

    /// `_rebuild_tensor_v2(storage, offset, size, stride, ...)`: the storage's elements the
    /// view selects, copied row-major.
    fn tensor(&mut self, args: &[Value], name: &str) -> Result<()> {
        let what = |m: &str| bad(format!("tensor `{name}`: {m}"));
        let [Value::Persistent(storage), offset, size, stride, ..] = args else {
            return Err(what("not (storage, offset, size, stride)"));
        };
        let ints =
            |v: &Value| -> Option<Vec<i64>> { v.elements()?.iter().map(|x| x.as_int()).collect() };
        let st = storage.elements().unwrap_or_default();
        let [Value::Str(tag), Value::Global(_, class), key, _location, ..] = &st[..] else {
            return Err(what(
                "a storage that is not ('storage', type, key, location, numel)",
            ));
        };
        let Some(dtype) = storage_dtype(class) else {
            return Ok(()); // complex, quantized, ...: not weights this crate reads
        };
        let (Some(key), Some(offset), Some(size), Some(stride)) =
            (key_name(key), offset.as_int(), ints(size), ints(stride))
        else {
            return Err(what("malformed offset, size or stride"));
        };
        if tag != "storage" || size.len() != stride.len() {
            return Err(what("malformed storage or stride"));
        }
        if self.names.contains(name) {
            return Ok(());
        }
        let file = format!("{}data/{key}", self.root);
        let data = *self
            .files
            .get(file.as_str())
            .ok_or_else(|| what(&format!("no {file}")))?;
        let view = View {
            width: dtype.bitsize() / 8,
            offset,
            size: &size,
            stride: &stride,
        };
        let bytes = view.gather(data, self.limit).map_err(|m| what(&m))?;
        self.names.insert(name.to_string());
        self.out.push(CheckpointTensor {
            name: name.to_string(),
            dtype,
            shape: size.iter().map(|&s| s as usize).collect(),
            data: bytes,
        });
        Ok(())
    }
}

/// A strided view of a storage.
struct View<'a> {
    width: usize,
    offset: i64,
    size: &'a [i64],
    stride: &'a [i64],
}

impl View<'_> {
    /// The view's elements row-major, checked against the storage's `data` and `limit` bytes.
    fn gather(&self, data: &[u8], limit: u64) -> std::result::Result<Vec<u8>, String> {
        let w = self.width;
        let elements = (data.len() / w) as i128;
        let mut n: i128 = 1;
        let (mut lo, mut hi) = (self.offset as i128, self.offset as i128);
        for (&s, &st) in self.size.iter().zip(self.stride) {
            if s < 0 {
                return Err(format!("size {s}"));
            }
            n = n.saturating_mul(s as i128);
            if n as u128 * w as u128 > limit as u128 {
                return Err(format!(
                    "{n} elements or more: more than the file could hold"
                ));
            }
            if s > 0 {
                let reach = (s as i128 - 1) * st as i128;
                (lo, hi) = (lo + reach.min(0), hi + reach.max(0));
            }
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        if lo < 0 || hi >= elements {
            return Err(format!(
                "elements {lo}..={hi} of a storage of {elements} ({} bytes)",
                data.len()
            ));
        }
        let contiguous = (self.size.iter().zip(self.stride).rev())
            .try_fold(1i64, |want, (&s, &st)| {
                (s <= 1 || st == want).then_some(want * s)
            })
            .is_some();
        let at = self.offset as usize * w;
        if contiguous {
            return Ok(data[at..at + n as usize * w].to_vec());
        }
        let mut out = Vec::with_capacity(n as usize * w);
        let mut index = vec![0i64; self.size.len()];
        for _ in 0..n {
            let e: i64 = self.offset
                + index
                    .iter()
                    .zip(self.stride)
                    .map(|(i, s)| i * s)
                    .sum::<i64>();
            out.extend_from_slice(&data[e as usize * w..(e as usize + 1) * w]);
            for d in (0..index.len()).rev() {
                index[d] += 1;
                if index[d] < self.size[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        Ok(out)
    }
}

/// The dtype of a storage class (`torch.FloatStorage`, ...); `None` for those not read here.
fn storage_dtype(class: &str) -> Option<Dtype> {
    Some(match class {
        "FloatStorage" => Dtype::F32,
        "HalfStorage" => Dtype::F16,
        "BFloat16Storage" => Dtype::BF16,
        "DoubleStorage" => Dtype::F64,
        "LongStorage" => Dtype::I64,
        "IntStorage" => Dtype::I32,
        "ShortStorage" => Dtype::I16,
        "CharStorage" => Dtype::I8,
        "ByteStorage" => Dtype::U8,
        "BoolStorage" => Dtype::BOOL,
        _ => return None,
    })
}
