//! Compares what an implementation produced with a golden case, tensor by tensor, with the
//! golden README's tolerances. Shared by `drconv verify` and the tests.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::golden::GoldenCase;
pub use crate::tensor::compare;
use crate::tensor::Tensor;
use crate::trace::{ForwardTrace, Gradients};

/// Forward tolerance: `|a - b| <= 1e-5 + 1e-4 |b|`.
pub const FORWARD_TOL: (f64, f64) = (1e-5, 1e-4);
/// Backward tolerance: `|a - b| <= 1e-4 + 1e-3 |b|`.
pub const BACKWARD_TOL: (f64, f64) = (1e-4, 1e-3);

/// One tensor's verdict. `ok: None` means the implementation did not produce it.
#[derive(Debug, Clone, Serialize)]
pub struct TensorReport {
    /// The largest |got - expected|, where the tensor was compared.
    pub max_abs_err: Option<f64>,
    /// Whether every value is within the tolerances, where the tensor was compared.
    pub ok: Option<bool>,
}

/// One case's verdict: `ok` only when every tensor of the case was produced and is in tolerance.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    /// The case's name.
    pub case: String,
    /// Whether every compared tensor is within tolerance.
    pub ok: bool,
    /// Each compared tensor by name.
    pub tensors: BTreeMap<String, TensorReport>,
}

fn check(got: &Tensor, gold: &Tensor, tol: (f64, f64)) -> TensorReport {
    // Parameter gradients arrive flat; compare by element count and values.
    let (err, ok) = if got.numel() == gold.numel() {
        compare(&got.data, &gold.data, tol.0, tol.1)
    } else {
        (f64::INFINITY, false)
    };
    TensorReport {
        max_abs_err: Some(err),
        ok: Some(ok),
    }
}

/// Compares a forward trace (and gradients, when the implementation computed them) with `case`.
pub fn compare_case(
    case: &GoldenCase,
    fwd: &ForwardTrace,
    grads: Option<&Gradients>,
) -> CaseReport {
    let mut tensors = BTreeMap::new();
    let mut produced: BTreeMap<String, (Tensor, (f64, f64))> = BTreeMap::new();
    for (name, t) in fwd.named() {
        produced.insert(name.to_string(), (t.clone(), FORWARD_TOL));
    }
    if case.tensor("eval.output").is_some() {
        produced.insert("eval.output".into(), (fwd.output.clone(), FORWARD_TOL));
    }
    if let Some(g) = grads {
        for (name, t) in g.named() {
            produced.insert(name, (t, BACKWARD_TOL));
        }
    }
    for stem in case.tensor_stems() {
        // Inputs and parameters are what we ran, not results.
        if stem == "x" || stem == "grad_output" || stem.starts_with("param.") {
            continue;
        }
        let gold = case.tensor(stem).expect("stem listed by the case");
        let report = match produced.get(stem) {
            Some((t, tol)) => check(t, gold, *tol),
            None => TensorReport {
                max_abs_err: None,
                ok: None,
            },
        };
        tensors.insert(stem.to_string(), report);
    }
    if let Some(gold) = &case.region_index {
        let mismatches = gold
            .iter()
            .zip(&fwd.region_index)
            .filter(|(a, b)| a != b)
            .count()
            + gold.len().abs_diff(fwd.region_index.len());
        tensors.insert(
            "inter.region_index".into(),
            TensorReport {
                max_abs_err: Some(mismatches as f64),
                ok: Some(mismatches == 0),
            },
        );
    }
    let ok = tensors.values().all(|t| t.ok == Some(true));
    CaseReport {
        case: case.name.clone(),
        ok,
        tensors,
    }
}

impl CaseReport {
    /// A one-line human summary: the worst error per tensor.
    pub fn summary_line(&self) -> String {
        let mut parts = Vec::new();
        for (name, t) in &self.tensors {
            let short = name.trim_start_matches("inter.");
            parts.push(match (t.ok, t.max_abs_err) {
                (None, _) => format!("{short}=n/a"),
                (Some(ok), Some(e)) if name == "inter.region_index" => {
                    format!("{short}={}{}", e as u64, if ok { "" } else { "!" })
                }
                (Some(ok), Some(e)) => format!("{short}={e:.1e}{}", if ok { "" } else { "!" }),
                (Some(ok), None) => format!("{short}={ok}"),
            });
        }
        format!(
            "{:<18} {}  {}",
            self.case,
            if self.ok { "PASS" } else { "FAIL" },
            parts.join(" ")
        )
    }
}
