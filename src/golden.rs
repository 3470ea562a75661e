//! Loader for one golden case directory (`case.json` + raw little-endian `.bin` tensors), as
//! written by the reference's `make_vectors.py` (see `tests/golden/README.md`).
//!
//! Every malformed input (missing file, bad JSON, wrong byte count, shape that does not fit the
//! layer, sha256 mismatch) is reported as [`DrConvError::Case`] naming the file; nothing panics.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{DrConvConfig, ForwardShape};
use crate::error::{DrConvError, Result};
use crate::params::{DrConvParams, ParamId};
use crate::tensor::Tensor;

/// One golden case: the layer config, its inputs and parameters, and every reference tensor.
#[derive(Debug, Clone)]
pub struct GoldenCase {
    /// `case.json` → `case`, or the directory name when absent.
    pub name: String,
    /// The case directory.
    pub dir: PathBuf,
    /// The layer's configuration.
    pub config: DrConvConfig,
    /// Shape of the forward (checked against `H_out`, `W_out` of `case.json`).
    pub shape: ForwardShape,
    /// `x.bin`, B x I x H x W.
    pub x: Tensor,
    /// The six `param.<state_dict name>.bin` files.
    pub params: DrConvParams,
    /// `grad_output.bin`, B x O x H' x W', when present.
    pub grad_output: Option<Tensor>,
    /// `inter.region_index.bin` (int32), B x H' x W', when present.
    pub region_index: Option<Vec<i32>>,
    /// Every float32 tensor of the manifest, keyed by file stem (`output`, `inter.pooled`, ...).
    tensors: HashMap<String, Tensor>,
}

#[derive(Debug, Deserialize)]
struct CaseJson {
    case: Option<String>,
    #[serde(rename = "B")]
    batch: usize,
    in_channels: usize,
    out_channels: usize,
    kernel_size: usize,
    region_num: usize,
    #[serde(rename = "H")]
    height: usize,
    #[serde(rename = "W")]
    width: usize,
    #[serde(rename = "H_out")]
    out_height: usize,
    #[serde(rename = "W_out")]
    out_width: usize,
    effective_conv_params: ConvParams,
    tensors: HashMap<String, TensorMeta>,
}

#[derive(Debug, Deserialize)]
struct ConvParams {
    stride: usize,
    padding: usize,
    dilation: usize,
}

#[derive(Debug, Deserialize)]
struct TensorMeta {
    shape: Vec<usize>,
    dtype: String,
    nbytes: u64,
    sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
struct IndexJson {
    cases: Vec<String>,
}

const REGION_INDEX_FILE: &str = "inter.region_index.bin";

fn case_err(msg: impl Into<String>) -> DrConvError {
    DrConvError::Case(msg.into())
}

impl GoldenCase {
    /// Loads and checks the case in `dir` (the directory holding `case.json`).
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        Self::load_with(&dir, |file| {
            let path = dir.join(file);
            std::fs::read(&path)
                .map_err(|e| case_err(format!("cannot read {}: {e}", path.display())))
        })
    }

    /// Loads a case whose files come from `read` (file name → bytes) instead of the file system,
    /// e.g. fetched by a web page; `dir` only names the case in messages and [`GoldenCase::dir`].
    pub fn load_with(
        dir: impl AsRef<Path>,
        mut read: impl FnMut(&str) -> Result<Vec<u8>>,
    ) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let json_path = dir.join("case.json");
        let text = String::from_utf8(read("case.json")?)
            .map_err(|e| case_err(format!("{} is not UTF-8: {e}", json_path.display())))?;
        let meta: CaseJson = serde_json::from_str(&text)
            .map_err(|e| case_err(format!("bad JSON in {}: {e}", json_path.display())))?;

        let (config, shape) = layer_of(&meta, &json_path)?;
        let (tensors, region_index) =
            read_tensors(&dir, &json_path, &meta, &config, &shape, &mut read)?;

        let required = |stem: &str| -> Result<Tensor> {
            tensors.get(stem).cloned().ok_or_else(|| {
                case_err(format!(
                    "{}: required tensor {stem}.bin (float32) is not in case.json's manifest",
                    dir.display()
                ))
            })
        };
        let x = required("x")?;
        let mut values: [Vec<f32>; 6] = Default::default();
        for id in ParamId::ALL {
            values[id.index()] = required(&format!("param.{}", id.name()))?.data;
        }
        let params = DrConvParams::from_values(config, values)
            .map_err(|e| case_err(format!("{}: {e}", dir.display())))?;
        let grad_output = tensors.get("grad_output").cloned();
        let name = meta.case.clone().unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| dir.display().to_string())
        });
        Ok(GoldenCase {
            name,
            dir,
            config,
            shape,
            x,
            params,
            grad_output,
            region_index,
            tensors,
        })
    }

    /// The float32 tensor stored as `<stem>.bin`, e.g. `output`, `inter.pooled`,
    /// `grad.param.conv_guide.weight` (a trailing `.bin` is accepted too).
    pub fn tensor(&self, stem: &str) -> Option<&Tensor> {
        self.tensors.get(stem.strip_suffix(".bin").unwrap_or(stem))
    }

    /// Stems of every float32 tensor in the case, sorted.
    pub fn tensor_stems(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}

/// A case's float32 tensors by stem.
type Tensors = HashMap<String, Tensor>;

/// The case's layer and forward shape, checked against the output size it records.
fn layer_of(meta: &CaseJson, json_path: &Path) -> Result<(DrConvConfig, ForwardShape)> {
    let cp = &meta.effective_conv_params;
    let config = DrConvConfig {
        in_channels: meta.in_channels,
        out_channels: meta.out_channels,
        kernel_size: meta.kernel_size,
        region_num: meta.region_num,
        stride: cp.stride,
        padding: cp.padding,
        dilation: cp.dilation,
    };
    let input_shape = [meta.batch, meta.in_channels, meta.height, meta.width];
    let shape = config.forward_shape(&input_shape).map_err(|e| {
        case_err(format!(
            "{}: layer {config:?} on input {input_shape:?} is invalid: {e}",
            json_path.display()
        ))
    })?;
    if (shape.out_height, shape.out_width) != (meta.out_height, meta.out_width) {
        return Err(case_err(format!(
            "{}: H_out x W_out = {} x {} but the layer gives {} x {}",
            json_path.display(),
            meta.out_height,
            meta.out_width,
            shape.out_height,
            shape.out_width
        )));
    }
    Ok((config, shape))
}

/// Every tensor of the case's manifest, read and checked against the layer's shapes: the
/// float32 ones by stem, and the region map.
fn read_tensors(
    dir: &Path,
    json_path: &Path,
    meta: &CaseJson,
    config: &DrConvConfig,
    shape: &ForwardShape,
    read: &mut impl FnMut(&str) -> Result<Vec<u8>>,
) -> Result<(Tensors, Option<Vec<i32>>)> {
    let mut tensors = HashMap::new();
    let mut region_index = None;
    // Sorted so that the first error reported does not depend on HashMap order.
    let mut files: Vec<_> = meta.tensors.iter().collect();
    files.sort_by(|a, b| a.0.cmp(b.0));
    for (file, tm) in files {
        if file.contains('/') || file.contains('\\') || !file.ends_with(".bin") {
            return Err(case_err(format!(
                "{}: tensor file name {file:?} must be a plain `<stem>.bin` name",
                json_path.display()
            )));
        }
        let stem = file.trim_end_matches(".bin").to_string();
        if let Some(expected) = expected_shape(&stem, config, shape) {
            if tm.shape != expected {
                return Err(case_err(format!(
                    "{}: {file} has shape {:?} in case.json but the layer needs {expected:?}",
                    dir.display(),
                    tm.shape
                )));
            }
        }
        let bytes = read_bin(dir, file, tm, read)?;
        match (tm.dtype.as_str(), file.as_str()) {
            ("int32", REGION_INDEX_FILE) => {
                let v: Vec<i32> = bytes
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                if let Some(bad) = v.iter().find(|&&g| g < 0 || g as usize >= config.region_num) {
                    return Err(case_err(format!(
                        "{}: {file} holds region {bad}, outside 0..{}",
                        dir.display(),
                        config.region_num
                    )));
                }
                region_index = Some(v);
            }
            ("float32", _) => {
                let data: Vec<f32> = bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                tensors.insert(stem, Tensor::new(&tm.shape, data)?);
            }
            (dt, _) => {
                return Err(case_err(format!(
                    "{}: {file} has dtype {dt:?}; only float32 (and int32 for {REGION_INDEX_FILE}) are supported",
                    dir.display()
                )))
            }
        }
    }
    Ok((tensors, region_index))
}

/// Every case under `root` (see [`list_cases`]), loaded.
pub fn load_cases(root: impl AsRef<Path>) -> Result<Vec<GoldenCase>> {
    list_cases(root)?
        .into_iter()
        .map(GoldenCase::load)
        .collect()
}

/// Case directories under `root`: the order of `root/index.json` → `cases` when that file
/// exists, otherwise every subdirectory holding a `case.json`, sorted by name.
pub fn list_cases(root: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let root = root.as_ref();
    let index = root.join("index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index)
            .map_err(|e| case_err(format!("cannot read {}: {e}", index.display())))?;
        let idx: IndexJson = serde_json::from_str(&text)
            .map_err(|e| case_err(format!("bad JSON in {}: {e}", index.display())))?;
        let mut dirs = Vec::with_capacity(idx.cases.len());
        for name in idx.cases {
            let d = root.join(&name);
            if !d.join("case.json").is_file() {
                return Err(case_err(format!(
                    "{} lists case {name:?} but {} does not exist",
                    index.display(),
                    d.join("case.json").display()
                )));
            }
            dirs.push(d);
        }
        return Ok(dirs);
    }
    let entries = std::fs::read_dir(root).map_err(|e| {
        case_err(format!(
            "cannot list golden cases in {}: {e}",
            root.display()
        ))
    })?;
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| {
            case_err(format!(
                "cannot list golden cases in {}: {e}",
                root.display()
            ))
        })?;
        let p = entry.path();
        if p.join("case.json").is_file() {
            dirs.push(p);
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// The shape a known golden file must have for this layer, or None for an unknown stem.
fn expected_shape(stem: &str, c: &DrConvConfig, s: &ForwardShape) -> Option<Vec<usize>> {
    let stem = stem.strip_prefix("grad.").unwrap_or(stem);
    if let Some(pname) = stem.strip_prefix("param.") {
        return ParamId::from_name(pname).map(|id| c.param_shape(id));
    }
    Some(match stem {
        "x" => s.input(c).to_vec(),
        "output" | "eval.output" | "grad_output" => s.output(c).to_vec(),
        "inter.pooled" => s.pooled(c).to_vec(),
        "inter.kernel_logits" | "inter.sigmoid" => s.logits(c).to_vec(),
        "inter.kernel" => s.kernel(c).to_vec(),
        "inter.corr" => s.corr(c).to_vec(),
        "inter.guide" => s.guide(c).to_vec(),
        "inter.region_index" => s.region().to_vec(),
        _ => return None,
    })
}

/// Reads `file` with `read`, checking case.json's nbytes against the shape and the file, and the
/// sha256.
fn read_bin(
    dir: &Path,
    file: &str,
    tm: &TensorMeta,
    read: &mut impl FnMut(&str) -> Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    let path = dir.join(file);
    // Checked: a case.json shape can claim any size (found by fuzz/fuzz_targets/case_loader.rs).
    let want = tm
        .shape
        .iter()
        .try_fold(4u64, |n, &d| n.checked_mul(d as u64))
        .ok_or_else(|| {
            case_err(format!(
                "{}: shape {:?} in case.json overflows a 64-bit byte count",
                path.display(),
                tm.shape
            ))
        })?;
    if tm.nbytes != want {
        return Err(case_err(format!(
            "{}: case.json says nbytes {} but shape {:?} of 4-byte {} needs {want}",
            path.display(),
            tm.nbytes,
            tm.shape,
            tm.dtype
        )));
    }
    let bytes = read(file)?;
    if bytes.len() as u64 != want {
        let how = if (bytes.len() as u64) < want {
            "truncated"
        } else {
            "too long"
        };
        return Err(case_err(format!(
            "{}: {how}: {} bytes on disk, case.json needs {want} (shape {:?})",
            path.display(),
            bytes.len(),
            tm.shape
        )));
    }
    if let Some(expected) = &tm.sha256 {
        let got = sha256_hex(&bytes);
        if !got.eq_ignore_ascii_case(expected) {
            return Err(case_err(format!(
                "{}: sha256 is {got} but case.json says {expected}",
                path.display()
            )));
        }
    }
    Ok(bytes)
}

/// SHA-256 of `data` as lowercase hex (the `sha256` field of `case.json`).
fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::sha256_hex;

    #[test]
    fn sha256_known_vectors() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }
}
