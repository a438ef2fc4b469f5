#!/usr/bin/env node
// Quality benchmark (issue 4): default `nf fit` on every dataset, scored with `nf eval`,
// next to the reference figures and a full-covariance Gaussian.
//
//   npm run bench:quality [-- --data ../shared/data --only moons,gmm10d --seed 0 --out bench/results]
//
// Each dataset: train.csv + val.csv concatenated are the one input to `nf fit` (which makes
// its own validation split); test.csv is evaluated. Prints a table, writes JSON.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { defaultDataDir, nf, opt, root } from './common.js';

const dataDir = resolve(opt('data', defaultDataDir));
const only = opt('only', '')?.split(',').filter(Boolean);
const seed = opt('seed', '0');
const outDir = resolve(opt('out', join(root, 'bench', 'results')));
const extra = opt('fit-args', '').split(' ').filter(Boolean);

const TOY_SETS = ['moons', '8gaussians', 'checkerboard', 'pinwheel', 'rings'];

function readCsv(path) {
  const lines = readFileSync(path, 'utf8').trim().split(/\r?\n/);
  return { header: lines[0], rows: lines.slice(1).map((l) => l.split(',').map(Number)) };
}

/** Mean test log-likelihood of one full-covariance Gaussian fitted by maximum likelihood. */
function gaussianBaseline(train, test) {
  const D = train[0].length;
  const n = train.length;
  const mu = new Array(D).fill(0);
  for (const r of train) for (let j = 0; j < D; j++) mu[j] += r[j] / n;
  const S = Array.from({ length: D }, () => new Array(D).fill(0));
  for (const r of train) for (let i = 0; i < D; i++) for (let j = 0; j <= i; j++) S[i][j] += ((r[i] - mu[i]) * (r[j] - mu[j])) / n;
  for (let i = 0; i < D; i++) for (let j = 0; j < i; j++) S[j][i] = S[i][j];
  // Cholesky S = L Lᵀ (tiny ridge for degenerate columns).
  const L = Array.from({ length: D }, () => new Array(D).fill(0));
  for (let i = 0; i < D; i++) {
    for (let j = 0; j <= i; j++) {
      let s = S[i][j] + (i === j ? 1e-12 : 0);
      for (let k = 0; k < j; k++) s -= L[i][k] * L[j][k];
      L[i][j] = i === j ? Math.sqrt(Math.max(s, 1e-300)) : s / L[j][j];
    }
  }
  const logDet = 2 * L.reduce((a, row, i) => a + Math.log(row[i]), 0);
  let sum = 0;
  for (const r of test) {
    const z = new Array(D);
    for (let i = 0; i < D; i++) {
      let s = r[i] - mu[i];
      for (let k = 0; k < i; k++) s -= L[i][k] * z[k];
      z[i] = s / L[i][i];
    }
    sum += -0.5 * z.reduce((a, v) => a + v * v, 0) - 0.5 * D * Math.log(2 * Math.PI) - 0.5 * logDet;
  }
  return sum / test.length;
}

/** Reference figures from REFERENCE.md's first table, by dataset. */
function referenceFigures() {
  const path = join(dataDir, '..', 'REFERENCE.md');
  if (!existsSync(path)) return {};
  const out = {};
  const num = (s) => {
    const m = /-?\d+\.\d+/.exec(s ?? '');
    return m ? Number(m[0]) : null;
  };
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    if (cells.length < 13 || !/^[a-z0-9]+$/.test(cells[1] ?? '') || cells[2] === 'D') continue;
    out[cells[1]] = { trueLL: num(cells[4]), realnvp: num(cells[5]), gmm: num(cells[10]), kde: num(cells[11]) };
  }
  return out;
}

function run(cmd, argv) {
  const r = spawnSync(process.execPath, [cmd, ...argv], { encoding: 'utf8', maxBuffer: 1 << 28, env: { ...process.env, NO_COLOR: '1' } });
  if (r.status !== 0) throw new Error(`nf ${argv.join(' ')} failed (${r.status}): ${r.stderr.trim()}`);
  return r.stdout;
}

const refs = referenceFigures();
const datasets = readdirSync(dataDir)
  .filter((d) => existsSync(join(dataDir, d, 'train.csv')))
  .filter((d) => !only?.length || only.includes(d))
  .sort();
const commit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).stdout.trim();
const work = mkdtempSync(join(tmpdir(), 'nf-bench-quality-'));
const results = [];
const started = Date.now();
for (const name of datasets) {
  const dir = join(dataDir, name);
  const train = readCsv(join(dir, 'train.csv'));
  const val = readCsv(join(dir, 'val.csv'));
  const test = readCsv(join(dir, 'test.csv'));
  const input = join(work, `${name}.csv`);
  writeFileSync(input, [train.header, ...[...train.rows, ...val.rows].map((r) => r.join(','))].join('\n') + '\n');
  const model = join(work, `${name}-model`);
  const t0 = Date.now();
  const fit = JSON.parse(run(nf, ['fit', input, '-m', model, '--json', '--seed', seed, '-q', ...extra]));
  const fitSeconds = (Date.now() - t0) / 1000;
  const ev = JSON.parse(run(nf, ['eval', join(dir, 'test.csv'), '-m', model, '--json']));
  const truthPath = join(dir, 'test_logp.csv');
  const truth = existsSync(truthPath) ? readCsv(truthPath).rows.reduce((a, r) => a + r[0], 0) / test.rows.length : null;
  const D = train.rows[0].length;
  const ref = refs[name] ?? {};
  const row = {
    dataset: name,
    dim: D,
    rows: train.rows.length + val.rows.length,
    nf: ev.meanLogLik,
    nfStderr: ev.stderr,
    realnvp: ref.realnvp ?? null,
    gmm: ref.gmm ?? null,
    kde: ref.kde ?? null,
    gauss: gaussianBaseline([...train.rows, ...val.rows], test.rows),
    truth: truth ?? ref.trueLL ?? null,
    fitSeconds,
    epochs: fit.epochs,
    bestEpoch: fit.bestEpoch,
    backend: fit.backend,
    restarts: fit.restarts ?? 1,
    chosenRestart: (fit.chosenRestart ?? 0) + 1, // 1-based here, as in earlier results files
    restartValLogLiks: (fit.restartValNlls ?? [fit.bestValNll]).map((v) => (v === null ? null : -v)),
    // Each restart's base: Gaussians in its mixture, 0 = standard normal.
    restartComponents: fit.restartComponents ?? [],
  };
  // The issue's second bar, for the non-Gaussian 2-D toy sets: the best of GMM and KDE.
  row.vsBestBaseline = TOY_SETS.includes(name) && row.gmm !== null && row.kde !== null ? row.nf - Math.max(row.gmm, row.kde) : null;
  row.vsRealnvpPerDim = row.realnvp === null ? null : (row.nf - row.realnvp) / D;
  row.meetsRealnvp = row.realnvp === null ? null : row.nf >= row.realnvp - 0.02 * D;
  results.push(row);
  const f = (v, d = 3) => (v === null || v === undefined ? '–' : v.toFixed(d));
  process.stderr.write(`${name}: nf ${f(row.nf)} ± ${f(row.nfStderr)} (RealNVP ${f(row.realnvp)}, truth ${f(row.truth)}) in ${fitSeconds.toFixed(0)} s\n`);
}
rmSync(work, { recursive: true, force: true });

const f = (v, d = 3) => (v === null || v === undefined ? '–' : v.toFixed(d));
const lines = [
  `nf quality benchmark — commit ${commit}, seed ${seed}${extra.length > 0 ? `, fit args ${extra.join(' ')}` : ''}, ${new Date().toISOString()}, total ${((Date.now() - started) / 60000).toFixed(1)} min`,
  '',
  '| dataset | D | rows | nf test LL ± se | RealNVP ref | Δ/dim vs ref | GMM | KDE | Δ vs best of GMM/KDE | Gauss | truth | gap to truth | fit s | epochs (best) | restart kept: val LL of each (base) | backend |',
  '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ...results.map((r) =>
    `| ${r.dataset} | ${r.dim} | ${r.rows} | ${f(r.nf)} ± ${f(r.nfStderr)} | ${f(r.realnvp)} | ${r.vsRealnvpPerDim === null ? '–' : (r.vsRealnvpPerDim >= 0 ? '+' : '') + r.vsRealnvpPerDim.toFixed(3)}${r.meetsRealnvp === false ? ' ✗' : ''} | ${f(r.gmm)} | ${f(r.kde)} | ${r.vsBestBaseline === null ? '–' : (r.vsBestBaseline >= 0 ? '+' : '') + r.vsBestBaseline.toFixed(3) + (r.vsBestBaseline < 0 ? ' ✗' : '')} | ${f(r.gauss)} | ${f(r.truth)} | ${r.truth === null ? '–' : f(r.truth - r.nf)} | ${r.fitSeconds.toFixed(0)} | ${r.epochs} (${r.bestEpoch}) | ${r.chosenRestart}: ${r.restartValLogLiks.map((v, i) => `${f(v)}${r.restartComponents.length > i ? ` (${r.restartComponents[i] ? `K=${r.restartComponents[i]}` : 'N'})` : ''}`).join(' / ')} | ${r.backend} |`,
  ),
];
process.stdout.write(lines.join('\n') + '\n');
mkdirSync(outDir, { recursive: true });
const tag = extra.length > 0 ? `-${extra.join('').replace(/[^A-Za-z0-9.]+/g, '_')}` : '';
const file = join(outDir, `quality-${commit || 'nogit'}-seed${seed}${tag}.json`);
writeFileSync(file, JSON.stringify({ commit, seed, fitArgs: extra, date: new Date().toISOString(), results }, null, 1) + '\n');
process.stderr.write(`wrote ${file}\n`);
