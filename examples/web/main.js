// The page: asks drconv (Rust compiled to wasm, ./pkg) for a WebGPU device, runs the pretrained
// layer on the bundled photo, trains fresh layers on demand and checks the golden files. All the
// maths is in the wasm module; this file fetches bytes, decodes dropped images and draws pixels.
// WebGPU canvases do not present in headless browsers, so results are read back and drawn with
// putImageData on 2D canvases.

import init, { WebGpu, Playground } from './pkg/drconv.js';
import { caseNames, runGoldenCase, summarise } from './golden.js';

const params = new URLSearchParams(location.search);
// Longer image side fed to the layer (`?size=N`): 64 by default, below the native demo's 80 so
// the page stays quick on software adapters; the pretrained layer runs at any size.
const MAX_SIDE = Number(params.get('size') ?? 64);
const GOLDEN_ROOT = '../../tests/golden';
const STEPS_PER_CALL = 10;   // training steps between loss readbacks
const FRAME_EVERY = 50;      // steps between region-map redraws while training

const $ = (id) => document.getElementById(id);
// What the browser test reads; also handy in the console.
const page = { lossHistory: [], pretrained: null, errors: [] };
window.drconvPage = page;

function setState(state, message) {
  document.body.dataset.state = state;
  if (message !== undefined) $('status').textContent = message;
}

function fail(e) {
  console.error(e);
  page.errors.push(String(e?.message ?? e));
  setState('error', `Error: ${e?.message ?? e}`);
}

function draw(canvasId, rgba, width, height) {
  const c = $(canvasId);
  c.width = width;
  c.height = height;
  c.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(rgba), width, height), 0, 0);
}

function legend(regionPixels) {
  const pal = Playground.palette();
  const el = $('legend');
  el.replaceChildren();
  regionPixels.forEach((n, r) => {
    const k = (r % (pal.length / 3)) * 3;
    const s = document.createElement('span');
    s.className = 'swatch';
    s.style.background = `rgb(${pal[k]},${pal[k + 1]},${pal[k + 2]})`;
    s.title = `region ${r}: ${n} pixels`;
    el.append(s);
  });
}

function showFrame(frame) {
  draw('output', frame.output, frame.width, frame.height);
  draw('regions', frame.regions, frame.width, frame.height);
  legend(frame.region_pixels);
  $('output-loss').textContent = frame.loss === undefined ? '' : `(MSE ${frame.loss.toFixed(5)})`;
  $('forward-ms').textContent = `${frame.forward_ms.toFixed(2)} ms (${frame.width} × ${frame.height})`;
}

function plotLoss() {
  const c = $('loss-plot'), g = c.getContext('2d');
  const pts = page.lossHistory.filter((p) => p.loss > 0);
  g.clearRect(0, 0, c.width, c.height);
  if (pts.length < 2) return;
  const logs = pts.map((p) => Math.log10(p.loss));
  const lo = Math.min(...logs), hi = Math.max(...logs), span = Math.max(hi - lo, 1e-6);
  const last = pts[pts.length - 1].step;
  g.strokeStyle = '#1f77b4';
  g.lineWidth = 2;
  g.beginPath();
  pts.forEach((p, i) => {
    const x = 4 + (c.width - 8) * p.step / last;
    const y = 4 + (c.height - 8) * (hi - logs[i]) / span;
    i ? g.lineTo(x, y) : g.moveTo(x, y);
  });
  g.stroke();
}

let gpu = null;
let playground = null;
let busy = false;
let stopRequested = false;

function setBusy(b) {
  busy = b;
  $('train').disabled = b;
  $('pretrained').disabled = b;
  $('stop').disabled = !b;
}

async function loadImage(pg) {
  playground?.free();
  playground = pg;
  draw('input', pg.input_rgba(), pg.width, pg.height);
  draw('target', pg.target_rgba(), pg.width, pg.height);
}

async function runPretrained() {
  setState('running', 'Running the pretrained layer…');
  const r = await fetch('pretrained.safetensors');
  if (!r.ok) throw new Error(`GET pretrained.safetensors: HTTP ${r.status}`);
  const config = JSON.parse(playground.load_weights(new Uint8Array(await r.arrayBuffer())));
  const frame = await playground.run_loaded(5);
  showFrame(frame);
  page.pretrained = { config, loss: frame.loss, forwardMs: frame.forward_ms, regionPixels: Array.from(frame.region_pixels) };
  setState('ready', `Pretrained layer (${config.region_num} regions) on the image. Press Train to learn a fresh one here.`);
}

async function train() {
  const regions = Number($('regions-n').value);
  const steps = Number($('steps').value);
  const lr = Number($('lr').value);
  setBusy(true);
  stopRequested = false;
  page.lossHistory = [];
  setState('training', `Training ${regions} regions…`);
  try {
    await playground.start_training(regions, lr, 0);
    let done = 0;
    while (done < steps && !stopRequested) {
      // One step first: its loss is the fresh layer's, and it builds the plans, so the timings
      // of the later calls are the steady state. Then chunks that end on multiples of 10.
      const chunk = done === 0 ? 1 : STEPS_PER_CALL - (done % STEPS_PER_CALL);
      const p = await playground.train(Math.min(chunk, steps - done));
      done = p.steps;
      page.lossHistory.push({ step: p.steps, loss: p.loss });
      $('loss').textContent = `step ${p.steps}/${steps}  loss ${p.loss.toFixed(5)}`;
      $('step-ms').textContent = `${p.ms_per_step.toFixed(2)} ms`;
      plotLoss();
      const last = done >= steps || stopRequested;
      if (done === 1 || done % FRAME_EVERY === 0 || last) showFrame(await playground.trained_frame(last ? 5 : 1));
    }
    setState('trained', `Trained ${done} steps: loss ${page.lossHistory.at(-1).loss.toFixed(5)}.`);
  } finally {
    setBusy(false);
  }
}

async function useFile(file) {
  if (busy) return;
  setBusy(true);
  try {
    const bitmap = await createImageBitmap(file);
    // Pre-shrink big photos in the browser; drconv's own Lanczos fit does the last step.
    const scale = Math.min(1, (4 * MAX_SIDE) / Math.max(bitmap.width, bitmap.height));
    const w = Math.max(1, Math.round(bitmap.width * scale)), h = Math.max(1, Math.round(bitmap.height * scale));
    const c = new OffscreenCanvas(w, h), g = c.getContext('2d');
    g.drawImage(bitmap, 0, 0, w, h);
    const data = g.getImageData(0, 0, w, h).data;
    await loadImage(Playground.from_rgba(gpu, new Uint8Array(data.buffer), w, h, MAX_SIDE));
    await runPretrained();
  } finally {
    setBusy(false);
  }
}

async function runGolden(names) {
  names = names ?? await caseNames(GOLDEN_ROOT);
  const body = $('golden-table').tBodies[0];
  body.replaceChildren();
  const runs = [];
  for (const name of names) {
    const row = body.insertRow();
    row.insertCell().textContent = name;
    try {
      const run = await runGoldenCase(gpu, GOLDEN_ROOT, name);
      const s = summarise(run);
      runs.push({ ...run, summary: s });
      const verdict = row.insertCell();
      verdict.textContent = run.ok ? 'PASS' : 'FAIL';
      verdict.className = run.ok ? 'pass' : 'fail';
      row.insertCell().textContent = s.forward.toExponential(1);
      row.insertCell().textContent = run.has_backward ? s.gradient.toExponential(1) : 'n/a';
      row.insertCell().textContent = s.regions === 0 ? 'exact' : `${s.regions} wrong`;
      row.insertCell().textContent = run.ms.toFixed(0);
    } catch (e) {
      runs.push({ case: name, ok: false, error: String(e?.message ?? e) });
      const cell = row.insertCell();
      cell.colSpan = 5;
      cell.className = 'fail';
      cell.textContent = `ERROR ${e?.message ?? e}`;
    }
  }
  return runs;
}
page.runGolden = runGolden;

// Every golden case on a second device forced to the GPU family of shaders (what a discrete
// GPU runs; Chromium's software adapter otherwise takes the CPU family). For the browser test.
page.runGoldenGpuFamily = async () => {
  const family = await WebGpu.connect_gpu_family();
  const runs = [];
  for (const name of await caseNames(GOLDEN_ROOT)) {
    try {
      const run = await runGoldenCase(family, GOLDEN_ROOT, name);
      runs.push({ ...run, summary: summarise(run) });
    } catch (e) {
      runs.push({ case: name, ok: false, error: String(e?.message ?? e) });
    }
  }
  return runs;
};

async function main() {
  if (!navigator.gpu) {
    $('unavailable-reason').textContent = 'navigator.gpu is missing: this browser (or this insecure http:// origin other than localhost) offers no WebGPU.';
    $('unavailable').hidden = false;
    setState('no-webgpu', 'WebGPU unavailable.');
    return;
  }
  await init();
  try {
    gpu = await WebGpu.connect();
  } catch (e) {
    $('unavailable-reason').textContent = e?.message ?? String(e);
    $('unavailable').hidden = false;
    setState('no-webgpu', 'WebGPU unavailable: no adapter.');
    return;
  }
  const info = JSON.parse(gpu.adapter());
  // wgpu's web backend keeps only the description; the browser's GPUAdapterInfo names more.
  const web = (await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' }))?.info ?? {};
  page.adapter = { ...info, vendor: web.vendor ?? '', architecture: web.architecture ?? '' };
  const name = [web.vendor, web.architecture, info.name].filter(Boolean).join(' ') || '(unnamed)';
  const software = info.device_type === 'Cpu' ? ' (software fallback adapter)' : '';
  $('adapter').textContent = name + software;
  $('backend').textContent = `${info.backend} (WebGPU through wgpu)`;
  $('target-desc').textContent = `(${Playground.target_description()})`;
  await loadImage(Playground.bundled(gpu, MAX_SIDE));
  await runPretrained();
  for (const id of ['train', 'pretrained', 'golden-run']) $(id).disabled = false;

  $('train').onclick = () => train().catch(fail);
  $('stop').onclick = () => { stopRequested = true; };
  $('pretrained').onclick = () => { setBusy(true); runPretrained().catch(fail).finally(() => setBusy(false)); };
  $('golden-run').onclick = async () => {
    $('golden-run').disabled = true;
    try {
      const runs = await runGolden();
      const ok = runs.filter((r) => r.ok).length;
      setState(document.body.dataset.state, `${ok} of ${runs.length} golden cases pass on this GPU.`);
    } catch (e) { fail(e); } finally { $('golden-run').disabled = false; }
  };
  $('file').onchange = (e) => { const f = e.target.files[0]; if (f) useFile(f).catch(fail); };
  const drop = $('drop');
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add('over'); };
  drop.ondragleave = () => drop.classList.remove('over');
  drop.ondrop = (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const f = e.dataTransfer.files[0];
    if (f) useFile(f).catch(fail);
  };
}

main().catch(fail);
