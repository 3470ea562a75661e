// The browser test (run by run-browser-test.sh after the wasm is built): serves the repository on
// a loopback port, opens the demo page in headless Debian Chromium with WebGPU enabled (software
// SwiftShader adapter where there is no GPU) and checks, on that adapter:
//   * the golden cases: forward, fused forward and gradients within the usual tolerances, region
//     map exact (compared in Rust by drconv::verify; this file only reads the verdicts), with the
//     adapter's shaders and again with the GPU family forced;
//   * the pretrained layer reproduces the demo target and fills the canvases;
//   * Train lowers the loss;
// then saves target/web-test/screenshot.png and results.json. Exit code 0 only when all pass.

import { chromium } from 'playwright-core';
import { createServer } from 'node:http';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const OUT = join(ROOT, 'target', 'web-test');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
// Cases that must be present and pass (the others of index.json run too).
const REQUIRED_CASES = ['tiny', 'seed_kinds'];
const TRAIN_STEPS = 40;
const DEADLINE_MS = 8 * 60 * 1000;

const MIME = {
  '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css',
  '.wasm': 'application/wasm', '.json': 'application/json', '.png': 'image/png',
};

/** A read-only static server for ROOT on 127.0.0.1 (GET/HEAD only, no path escapes). */
function serve() {
  const server = createServer((req, res) => {
    let file = '', ok = req.method === 'GET' || req.method === 'HEAD';
    try {
      file = join(ROOT, normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname)));
      ok = ok && file.startsWith(ROOT + sep) && statSync(file).isFile();
    } catch { ok = false; }
    if (!ok) { res.writeHead(404).end(); return; }
    res.writeHead(200, { 'content-type': MIME[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : readFileSync(file));
  });
  return new Promise((done) => server.listen(0, '127.0.0.1', () => done(server)));
}

const results = { checks: [] };
function check(name, ok, detail = '') {
  results.checks.push({ name, ok, detail });
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? `: ${detail}` : ''}`);
}
const fmt = (e) => (e === null || e === undefined ? 'inf' : e.toExponential(1));

async function waitState(page, states, timeout) {
  await page.waitForFunction((s) => s.includes(document.body.dataset.state), states, { timeout });
  return page.evaluate(() => [document.body.dataset.state, document.getElementById('status').textContent]);
}

/** Distinct colours and the fraction of opaque pixels of a canvas (blank = 1 colour). */
function canvasStats(page, id) {
  return page.evaluate((id) => {
    const c = document.getElementById(id);
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const colours = new Set();
    let opaque = 0;
    for (let i = 0; i < d.length; i += 4) {
      colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
      if (d[i + 3] === 255) opaque++;
    }
    return { width: c.width, height: c.height, colours: colours.size, opaque: opaque / (d.length / 4) };
  }, id);
}

/** The page after training on the bundled photo: target/web-test/screenshot.png. */
async function screenshot(page) {
  results.screenshot = join(OUT, 'screenshot.png');
  await page.screenshot({ path: results.screenshot, fullPage: true });
  console.log(`screenshot: ${results.screenshot}`);
}

async function run(page, base) {
  await page.goto(`${base}/examples/web/index.html`);
  const [state, status] = await waitState(page, ['ready', 'error', 'no-webgpu'], 180_000);
  check('page loads and runs the pretrained layer', state === 'ready', `${state}: ${status}`);
  if (state !== 'ready') return;

  const adapter = await page.evaluate(() => window.drconvPage.adapter);
  results.adapter = adapter;
  check('WebGPU adapter', adapter.backend === 'BrowserWebGpu',
    `${adapter.vendor} ${adapter.architecture} ${adapter.name} (${adapter.backend}, ${adapter.device_type})`);

  const pre = await page.evaluate(() => window.drconvPage.pretrained);
  results.pretrained = pre;
  const pixels = pre.regionPixels.reduce((a, b) => a + b, 0);
  check('pretrained layer reproduces the demo target', Number.isFinite(pre.loss) && pre.loss < 0.01,
    `MSE ${pre.loss?.toFixed(5)}, ${pre.forwardMs.toFixed(2)} ms per forward`);
  check('pretrained region map covers the image with several regions',
    pixels > 0 && pre.regionPixels.filter((n) => n > 0).length >= 2, `pixels per region ${pre.regionPixels}`);
  for (const id of ['input', 'output', 'regions']) {
    const s = await canvasStats(page, id);
    check(`canvas #${id} has content`, s.opaque === 1 && s.colours >= 16,
      `${s.width}x${s.height}, ${s.colours} colours`);
  }

  const runs = await page.evaluate(() => window.drconvPage.runGolden());
  results.golden = runs;
  for (const r of runs) {
    if (r.error) { check(`golden ${r.case}`, false, r.error); continue; }
    const tensors = Object.entries(r.report.tensors)
      .map(([n, t]) => `${n.replace(/^inter\./, '')}=${n === 'inter.region_index' ? t.max_abs_err : fmt(t.max_abs_err)}${t.ok ? '' : '!'}`)
      .join(' ');
    check(`golden ${r.case}`, r.ok && r.has_backward,
      `${r.ms.toFixed(0)} ms; fused output ${fmt(r.fused_output_max_abs_err)}, fused regions wrong ${r.fused_region_mismatches}; ${tensors}`);
  }
  for (const name of REQUIRED_CASES) {
    check(`golden case ${name} ran`, runs.some((r) => r.case === name && r.ok));
  }
  // The GPU family forced (the GEMM correlation, K slices, split reductions): every case again.
  const family = await page.evaluate(() => window.drconvPage.runGoldenGpuFamily());
  results.goldenGpuFamily = family;
  for (const r of family) {
    check(`golden ${r.case} (GPU family)`, !r.error && r.ok && r.has_backward,
      r.error ?? `${r.ms.toFixed(0)} ms; fused output ${fmt(r.fused_output_max_abs_err)}, fused regions wrong ${r.fused_region_mismatches}`);
  }
  check('every golden case ran on the GPU family', family.length === runs.length && family.length > 0,
    `${family.length} of ${runs.length}`);

  await page.fill('#steps', String(TRAIN_STEPS));
  await page.fill('#regions-n', '4');
  await page.click('#train');
  const [tstate, tstatus] = await waitState(page, ['trained', 'error'], 300_000);
  const losses = await page.evaluate(() => window.drconvPage.lossHistory);
  const stepMs = await page.evaluate(() => document.getElementById('step-ms').textContent);
  results.training = { losses, stepMs };
  const first = losses[0]?.loss, last = losses.at(-1)?.loss;
  check('training in the page lowers the loss', tstate === 'trained' && last < first / 2,
    `${tstatus} loss ${first?.toFixed(4)} at step ${losses[0]?.step} -> ${last?.toFixed(4)} at step ${losses.at(-1)?.step}, ${stepMs} per step`);
  for (const id of ['output', 'regions']) {
    const s = await canvasStats(page, id);
    check(`canvas #${id} has content after training`, s.opaque === 1 && s.colours >= 2, `${s.colours} colours`);
  }

  await screenshot(page);

  // The user's own image: a non-square PNG (a strip of this page), through the file input.
  const png = await page.screenshot({ clip: { x: 0, y: 0, width: 300, height: 160 } });
  await page.setInputFiles('#file', { name: 'strip.png', mimeType: 'image/png', buffer: png });
  const [ustate, ustatus] = await waitState(page, ['ready', 'error'], 120_000);
  const dims = {};
  for (const id of ['input', 'output', 'regions']) dims[id] = await canvasStats(page, id);
  // 300 x 160 fits 64 x 35 (the page pre-shrinks to 256 x 137, drconv's fit rounds up).
  check('a dropped image runs through the pretrained layer', ustate === 'ready'
    && dims.input.width === 64 && dims.input.height === 35
    && ['output', 'regions'].every((id) => dims[id].width === 64 && dims[id].height === 35 && dims[id].colours >= 2),
    `${ustatus} input ${dims.input.width}x${dims.input.height}`);
}

/** Without WebGPU the page must say so: no adapter (no flag), and no navigator.gpu at all. */
async function runWithoutWebGpu(launch, base) {
  const browser = await launch([]);
  try {
    for (const [what, init] of [['no adapter', null], ['no navigator.gpu', () => { delete Navigator.prototype.gpu; }]]) {
      const page = await browser.newPage();
      if (init) await page.addInitScript(init);
      await page.goto(`${base}/examples/web/index.html`);
      const [state] = await waitState(page, ['ready', 'error', 'no-webgpu'], 60_000);
      const shown = await page.evaluate(() => !document.getElementById('unavailable').hidden
        && document.getElementById('unavailable-reason').textContent);
      check(`without WebGPU (${what}) the page says so`, state === 'no-webgpu' && !!shown, `${state}: ${shown}`);
      await page.close();
    }
  } finally {
    await browser.close();
  }
}

async function main() {
  const timer = setTimeout(() => { console.error('browser test: deadline passed'); process.exit(1); }, DEADLINE_MS);
  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(OUT, { recursive: true });
  const server = await serve();
  const base = `http://127.0.0.1:${server.address().port}`;
  const profiles = [];
  // A fresh profile per launch; WebGPU is behind --enable-unsafe-webgpu in Chromium on Linux.
  const launch = (extra) => {
    const profile = mkdtempSync(join(tmpdir(), 'drconv-chromium-'));
    profiles.push(profile);
    const args = [
      ...extra, '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-quic',
    ];
    if (process.getuid?.() === 0) args.push('--no-sandbox');
    return chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true, args, viewport: { width: 1280, height: 900 },
    });
  };
  const browser = await launch(['--enable-unsafe-webgpu']);
  const pageErrors = [];
  try {
    const page = await browser.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(`console: ${m.text()}`); });
    await run(page, base).catch((e) => check('test ran to the end', false, e.message));
    // After a failure the screenshot shows where it stopped; after success, the dropped image.
    if (!results.screenshot) await screenshot(page);
    await page.screenshot({ path: join(OUT, 'screenshot-last.png'), fullPage: true });
  } finally {
    await browser.close();
  }
  check('no page or console errors', pageErrors.length === 0, pageErrors.join(' | '));
  try {
    await runWithoutWebGpu(launch, base);
  } catch (e) {
    check('the page without WebGPU', false, e.message);
  } finally {
    server.close();
    for (const p of profiles) rmSync(p, { recursive: true, force: true });
    clearTimeout(timer);
  }
  writeFileSync(join(OUT, 'results.json'), JSON.stringify(results, null, 1));
  const failed = results.checks.filter((c) => !c.ok).length;
  console.log(`browser: ${results.checks.length - failed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

main().catch((e) => { console.error(e); process.exit(1); });
