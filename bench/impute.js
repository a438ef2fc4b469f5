#!/usr/bin/env node
// Imputation benchmark (issue 7): hide some coordinates of each test row, fill them with
// `nf impute -k K`, and compare against simple baselines and the true conditional.
//
//   node bench/impute.js [--data ../shared/data/gmm10d] [--model DIR] [--rows 5000]
//                        [--hide 3] [--draws 50] [--seed 0] [--impute-args "--burn-in 100"]
//
// Without --model (or when DIR holds no model.json) a model is first trained with
// `nf fit` on train.csv + val.csv (nf makes its own validation split).
// Point estimate of the flow = mean of the K draws of a row. Baselines: the training
// column means, and the conditional mean of one full-covariance Gaussian fitted to the
// training rows. When meta.json holds the true mixture (gmm10d), its exact conditional
// mean is reported too (the best any imputer can do in expectation).
// Coverage: share of hidden cells whose true value lies in the central 90% interval of
// the K draws (quantiles at positions p·(K+1), so exact draws give 0.90 in expectation).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { defaultDataDir, nf, opt } from './common.js';

const dataDir = resolve(opt('data', join(defaultDataDir, 'gmm10d')));
const maxRows = Number(opt('rows', '5000'));
const hide = Number(opt('hide', '3'));
const K = Number(opt('draws', '50'));
const seed = Number(opt('seed', '0'));
const imputeArgs = opt('impute-args', '').split(' ').filter(Boolean);
const work = mkdtempSync(join(tmpdir(), 'nf-bench-impute-'));
const modelDir = resolve(opt('model', join(work, 'model')));

function readCsv(path) {
  const lines = readFileSync(path, 'utf8').trim().split(/\r?\n/);
  return { header: lines[0].split(','), rows: lines.slice(1).map((l) => l.split(',').map(Number)) };
}

function run(cmdArgs) {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [nf, ...cmdArgs], { encoding: 'utf8', maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) throw new Error(`nf ${cmdArgs.join(' ')} failed (${r.status}): ${r.stderr}`);
  return { stdout: r.stdout, stderr: r.stderr, seconds: (Date.now() - t0) / 1000 };
}

/** mulberry32: a small seeded generator, so the hidden cells are the same on every run. */
function prng(s) {
  let a = s >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Solves A x = b (A small and symmetric positive definite) by Cholesky; also log|A|. */
function cholSolve(A, b) {
  const n = A.length;
  const L = A.map(() => new Array(n).fill(0));
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = A[i][j];
      for (let k = 0; k < j; k++) s -= L[i][k] * L[j][k];
      L[i][j] = i === j ? Math.sqrt(s) : s / L[j][j];
    }
  }
  const y = new Array(n);
  for (let i = 0; i < n; i++) {
    let s = b[i];
    for (let k = 0; k < i; k++) s -= L[i][k] * y[k];
    y[i] = s / L[i][i];
  }
  const x = new Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let s = y[i];
    for (let k = i + 1; k < n; k++) s -= L[k][i] * x[k];
    x[i] = s / L[i][i];
  }
  const logDet = 2 * L.reduce((a, row, i) => a + Math.log(row[i]), 0);
  const quad = y.reduce((a, v) => a + v * v, 0);
  return { x, logDet, quad };
}

const sub = (M, rows, cols) => rows.map((i) => cols.map((j) => M[i][j]));

/** Conditional mean (and variances) of a Gaussian N(mu, S) given x_o. */
function gaussConditional(mu, S, x, obs, mis) {
  const Soo = sub(S, obs, obs);
  const dev = obs.map((j) => x[j] - mu[j]);
  const { x: alpha, logDet, quad } = cholSolve(Soo, dev);
  const mean = mis.map((m) => mu[m] + obs.reduce((a, o, i) => a + S[m][o] * alpha[i], 0));
  const variance = mis.map((m) => {
    const { x: beta } = cholSolve(Soo, obs.map((o) => S[o][m]));
    return S[m][m] - obs.reduce((a, o, i) => a + S[m][o] * beta[i], 0);
  });
  const logLikObs = -0.5 * quad - 0.5 * logDet - 0.5 * obs.length * Math.log(2 * Math.PI);
  return { mean, variance, logLikObs };
}

/** Quantile at position p·(n+1) of sorted values (1-based, clamped): exact draws cover [p, 1−p] with probability 1−2p. */
function quantile(sorted, p) {
  const n = sorted.length;
  const pos = Math.min(Math.max(p * (n + 1), 1), n) - 1;
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, n - 1);
  return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
}

// ---- data
const train = [...readCsv(join(dataDir, 'train.csv')).rows, ...readCsv(join(dataDir, 'val.csv')).rows];
const testCsv = readCsv(join(dataDir, 'test.csv'));
const header = testCsv.header;
const test = testCsv.rows.slice(0, maxRows);
const D = header.length;
const meta = existsSync(join(dataDir, 'meta.json')) ? JSON.parse(readFileSync(join(dataDir, 'meta.json'), 'utf8')) : null;

// ---- model
if (!existsSync(join(modelDir, 'model.json'))) {
  const input = join(work, 'trainval.csv');
  writeFileSync(input, [header.join(','), ...train.map((r) => r.join(','))].join('\n') + '\n');
  process.stderr.write(`training a model in ${modelDir} (nf fit, seed 1)…\n`);
  const fit = run(['fit', input, '-m', modelDir, '--seed', '1', '-q']);
  process.stderr.write(`trained in ${fit.seconds.toFixed(0)} s\n`);
}

// ---- hide cells
const rand = prng(seed + 7);
const hidden = test.map(() => {
  const idx = [...Array(D).keys()];
  for (let i = D - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  return idx.slice(0, hide).sort((a, b) => a - b);
});
const masked = join(work, 'masked.csv');
writeFileSync(
  masked,
  [header.join(','), ...test.map((r, i) => r.map((v, j) => (hidden[i].includes(j) ? '' : String(v))).join(','))].join('\n') + '\n',
);

// ---- impute
const imp = run(['impute', masked, '-m', modelDir, '-k', String(K), '--seed', String(seed), ...imputeArgs]);
const out = imp.stdout.trim().split('\n');
if (out[0] !== [...header, 'draw'].join(',')) throw new Error(`unexpected header: ${out[0]}`);
if (out.length - 1 !== test.length * K) throw new Error(`expected ${test.length * K} rows, got ${out.length - 1}`);
const drawRows = out.slice(1).map((l) => l.split(',').map(Number));

// ---- baselines
const n = train.length;
const mu = new Array(D).fill(0);
for (const r of train) for (let j = 0; j < D; j++) mu[j] += r[j] / n;
const S = Array.from({ length: D }, () => new Array(D).fill(0));
for (const r of train) for (let i = 0; i < D; i++) for (let j = 0; j < D; j++) S[i][j] += ((r[i] - mu[i]) * (r[j] - mu[j])) / n;

function mixtureConditional(x, obs, mis) {
  const p = meta.params;
  const parts = p.weights.map((w, c) => {
    const g = gaussConditional(p.means[c], p.covariances[c], x, obs, mis);
    return { logw: Math.log(w) + g.logLikObs, mean: g.mean };
  });
  const m = Math.max(...parts.map((q) => q.logw));
  const ws = parts.map((q) => Math.exp(q.logw - m));
  const total = ws.reduce((a, b) => a + b, 0);
  return mis.map((_, t) => parts.reduce((a, q, c) => a + (ws[c] / total) * q.mean[t], 0));
}

const sq = { flow: 0, colMean: 0, gauss: 0, oracle: 0 };
const cover = { flow: 0, gauss: 0 };
let cells = 0;
let changedObserved = 0;
test.forEach((row, i) => {
  const mis = hidden[i];
  const obs = [...Array(D).keys()].filter((j) => !mis.includes(j));
  const draws = drawRows.slice(i * K, (i + 1) * K);
  for (const dr of draws) for (const j of obs) if (Math.fround(dr[j]) !== Math.fround(row[j])) changedObserved += 1;
  const g = gaussConditional(mu, S, row, obs, mis);
  const oracle = meta?.params?.covariances ? mixtureConditional(row, obs, mis) : null;
  mis.forEach((j, t) => {
    const truth = row[j];
    const vals = draws.map((dr) => dr[j]).sort((a, b) => a - b);
    const flowMean = vals.reduce((a, b) => a + b, 0) / K;
    sq.flow += (flowMean - truth) ** 2;
    sq.colMean += (mu[j] - truth) ** 2;
    sq.gauss += (g.mean[t] - truth) ** 2;
    if (oracle) sq.oracle += (oracle[t] - truth) ** 2;
    if (truth >= quantile(vals, 0.05) && truth <= quantile(vals, 0.95)) cover.flow += 1;
    const half = 1.6448536 * Math.sqrt(Math.max(g.variance[t], 0));
    if (Math.abs(truth - g.mean[t]) <= half) cover.gauss += 1;
    cells += 1;
  });
});

const result = {
  dataset: dataDir.split('/').pop(),
  rows: test.length,
  hiddenPerRow: hide,
  draws: K,
  imputeArgs,
  imputeSeconds: imp.seconds,
  mse: {
    flow: sq.flow / cells,
    columnMean: sq.colMean / cells,
    gaussianConditional: sq.gauss / cells,
    trueConditional: meta?.params?.covariances ? sq.oracle / cells : null,
  },
  coverage90: { flow: cover.flow / cells, gaussianConditional: cover.gauss / cells },
  observedCellsChanged: changedObserved,
  imputeMessage: imp.stderr.trim(),
};
const f = (v) => (v === null ? '–' : v.toFixed(4));
process.stdout.write(
  [
    `${result.dataset}: ${result.rows} test rows, ${hide} of ${D} cells hidden per row, ${K} draws per row (${imp.seconds.toFixed(0)} s)`,
    `MSE   flow (mean of draws) ${f(result.mse.flow)} | column means ${f(result.mse.columnMean)} | Gaussian conditional ${f(result.mse.gaussianConditional)} | true conditional ${f(result.mse.trueConditional)}`,
    `90% interval coverage   flow draws ${f(result.coverage90.flow)} | Gaussian conditional ${f(result.coverage90.gaussianConditional)}`,
    `observed cells changed: ${changedObserved}`,
    imp.stderr.trim(),
    JSON.stringify(result),
  ].join('\n') + '\n',
);
rmSync(work, { recursive: true, force: true });
