// Golden cases in the browser: fetch a case's files (tests/golden/<case>/) and hand them to the
// wasm module, which runs the layer on WebGPU and compares in Rust (drconv::verify). This file
// only moves bytes and summarises the report for display.

async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`GET ${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

/** The case names of `root/index.json`, in its order. */
export async function caseNames(root) {
  const bytes = await fetchBytes(`${root}/index.json`);
  return JSON.parse(new TextDecoder().decode(bytes)).cases;
}

/** Runs one case on `gpu` (a WebGpu) and returns drconv's GoldenRun report. */
export async function runGoldenCase(gpu, root, name) {
  const base = `${root}/${name}`;
  const caseJson = await fetchBytes(`${base}/case.json`);
  const manifest = JSON.parse(new TextDecoder().decode(caseJson));
  const files = new Map([['case.json', caseJson]]);
  await Promise.all(Object.keys(manifest.tensors).map(async (f) => {
    files.set(f, await fetchBytes(`${base}/${f}`));
  }));
  return JSON.parse(await gpu.run_golden_case(name, files));
}

/** Worst forward and gradient errors and the region-map mismatches of a GoldenRun. */
export function summarise(run) {
  let forward = 0, gradient = 0, regions = run.fused_region_mismatches, missing = [];
  for (const [name, t] of Object.entries(run.report.tensors)) {
    if (t.ok === null) { missing.push(name); continue; }
    // JSON has no Infinity: serde writes an infinite (NaN-poisoned) error as null.
    const err = t.max_abs_err ?? Infinity;
    if (name === 'inter.region_index') regions += err;
    else if (name.startsWith('grad.')) gradient = Math.max(gradient, err);
    else forward = Math.max(forward, err);
  }
  forward = Math.max(forward, run.fused_output_max_abs_err ?? Infinity);
  return { forward, gradient, regions, missing };
}
