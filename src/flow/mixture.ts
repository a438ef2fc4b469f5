/**
 * Initial parameters of a mixture base: a diagonal Gaussian mixture fitted by EM to the
 * standardised training rows, so a flow that starts as the identity starts as that mixture.
 * Plain JS: K·D is small and this runs once per restart.
 */
import type { Rng } from '../rng.js';

export interface MixtureParams {
  /** [K] log weights (any offset). */
  logits: Float32Array;
  /** [K·D] row-major means. */
  means: Float32Array;
  /** [K·D] row-major log standard deviations. */
  logStd: Float32Array;
}

/** Variances below this (standardised units) are floored: a component never collapses on a point. */
const MIN_VAR = 1e-4;

/**
 * EM from `inits` k-means++ seedings on evenly spaced rows (fewer than 2·`maxRows`), keeping the
 * fit with the highest likelihood (one seeding often merges two clusters: 8gaussians,
 * K = 8, test LL −3.03 instead of −2.82). `data` is row-major [rows, dim].
 */
export function fitMixture(data: Float32Array, dim: number, K: number, rng: Rng, inits = 4, iterations = 100, maxRows = 5000): MixtureParams {
  const { x, n } = evenlySpaced(data, dim, maxRows);
  let best: { params: MixtureParams; logLik: number } | null = null;
  for (let t = 0; t < inits; t++) {
    const means = new Float64Array(K * dim);
    seedMeans(x, n, dim, K, rng, means);
    const r = runEm(x, n, dim, { means, vars: new Float64Array(K * dim).fill(1), weights: new Float64Array(K).fill(1 / K) }, iterations);
    if (!best || r.logLik > best.logLik) best = r;
  }
  return best!.params;
}

/**
 * More EM from `m` on up to `maxRows` evenly spaced rows of `data` (every row of the bench's
 * sets): the K search fits on 5,000 rows to stay fast; the mixture a flow starts from (and
 * falls back to) uses more. 8gaussians, K = 8: test LL −2.8265 from 5,000 rows, −2.8232 from
 * 25,000; rings, K = 32: training LL −2.441 → −2.288. At 20,000 rows × 10 columns, K = 32,
 * this takes about 15 s.
 */
export function refineMixture(data: Float32Array, dim: number, m: MixtureParams, iterations = 100, maxRows = 20000): MixtureParams {
  const { x, n } = evenlySpaced(data, dim, maxRows);
  const max = Math.max(...m.logits);
  const w = Float64Array.from(m.logits, (l) => Math.exp(l - max));
  const total = w.reduce((a, v) => a + v, 0);
  const start = {
    means: Float64Array.from(m.means),
    vars: Float64Array.from(m.logStd, (ls) => Math.exp(2 * ls)),
    weights: w.map((v) => v / total),
  };
  return runEm(x, n, dim, start, iterations).params;
}

/** Every `stride`-th row as float64 so that fewer than 2·`maxRows` rows remain. */
function evenlySpaced(data: Float32Array, dim: number, maxRows: number): { x: Float64Array; n: number } {
  const all = data.length / dim;
  const stride = Math.max(1, Math.floor(all / maxRows));
  const n = Math.floor(all / stride);
  const x = new Float64Array(n * dim);
  for (let i = 0; i < n; i++) for (let d = 0; d < dim; d++) x[i * dim + d] = data[i * stride * dim + d];
  return { x, n };
}

/** EM from `start` (its arrays are updated in place). */
function runEm(
  x: Float64Array,
  n: number,
  dim: number,
  start: { means: Float64Array; vars: Float64Array; weights: Float64Array },
  iterations: number,
): { params: MixtureParams; logLik: number } {
  const { means, vars, weights } = start;
  const K = weights.length;
  const resp = new Float64Array(n * K);
  const logw = new Float64Array(K);
  let logLik = -Infinity;
  for (let it = 0; it < iterations; it++) {
    const previous = logLik;
    for (let k = 0; k < K; k++) logw[k] = Math.log(weights[k]);
    logLik = scoreRows(x, n, dim, logw, means, vars, resp); // E step
    // Converged: the mean log-likelihood moved by less than 1e-5 nats.
    if (logLik - previous < 1e-5 * n) break;
    // M step.
    for (let k = 0; k < K; k++) {
      let nk = 0;
      for (let i = 0; i < n; i++) nk += resp[i * K + k];
      weights[k] = nk / n;
      if (nk < 1e-8) continue; // an empty component drops out (weight 0) and keeps its means
      for (let d = 0; d < dim; d++) {
        let m = 0;
        for (let i = 0; i < n; i++) m += resp[i * K + k] * x[i * dim + d];
        m /= nk;
        let v = 0;
        for (let i = 0; i < n; i++) {
          const e = x[i * dim + d] - m;
          v += resp[i * K + k] * e * e;
        }
        means[k * dim + d] = m;
        vars[k * dim + d] = Math.max(MIN_VAR, v / nk);
      }
    }
  }
  let wsum = 0;
  for (let k = 0; k < K; k++) wsum += weights[k];
  const params = {
    logits: Float32Array.from(weights, (w) => Math.log(Math.max(w / wsum, 1e-6))),
    means: Float32Array.from(means),
    logStd: Float32Array.from(vars, (v) => 0.5 * Math.log(v)),
  };
  return { params, logLik };
}

/**
 * Σ over rows of log Σ_k w_k N(x; μ_k, diag var_k), with log weights `logw`; with `resp`,
 * also each row's responsibilities (row-major [n, K]).
 */
function scoreRows(x: ArrayLike<number>, n: number, dim: number, logw: Float64Array, means: ArrayLike<number>, vars: ArrayLike<number>, resp: Float64Array | null): number {
  const K = logw.length;
  const logNorm = new Float64Array(K);
  for (let k = 0; k < K; k++) {
    let s = 0;
    for (let d = 0; d < dim; d++) s += Math.log(vars[k * dim + d]);
    logNorm[k] = 0.5 * s + 0.5 * dim * Math.log(2 * Math.PI);
  }
  const c = new Float64Array(K);
  let total = 0;
  for (let i = 0; i < n; i++) {
    let max = -Infinity;
    for (let k = 0; k < K; k++) {
      let q = 0;
      for (let d = 0; d < dim; d++) {
        const e = x[i * dim + d] - means[k * dim + d];
        q += (e * e) / vars[k * dim + d];
      }
      c[k] = logw[k] - logNorm[k] - 0.5 * q;
      if (c[k] > max) max = c[k];
    }
    let s = 0;
    for (let k = 0; k < K; k++) s += (c[k] = Math.exp(c[k] - max));
    if (resp) for (let k = 0; k < K; k++) resp[i * K + k] = c[k] / s;
    total += max + Math.log(s);
  }
  return total;
}

/** Mean log-likelihood of row-major `rows` under the mixture. */
export function mixtureLogLik(m: MixtureParams, rows: Float32Array, dim: number): number {
  const max = Math.max(...m.logits);
  let norm = 0;
  for (const l of m.logits) norm += Math.exp(l - max);
  const logw = Float64Array.from(m.logits, (l) => l - max - Math.log(norm));
  const vars = Float64Array.from(m.logStd, (ls) => Math.exp(2 * ls));
  const n = rows.length / dim;
  return scoreRows(rows, n, dim, logw, m.means, vars, null) / n;
}

/** Candidate component counts, and training rows asked of each component's 2D + 1 parameters. */
export const COMPONENT_CHOICES = [1, 2, 4, 8, 16, 32] as const;
export const ROWS_PER_PARAMETER = 10;

/** The most components `rows` training rows of `dim` columns support (at least 1). */
export function supportedComponents(rows: number, dim: number): number {
  return Math.max(1, Math.floor(rows / (ROWS_PER_PARAMETER * (2 * dim + 1))));
}

/**
 * The mixture base a flow starts from: for each candidate K that the training rows can
 * support, EM on the training rows; the K with the best validation log-likelihood wins.
 * `pause` runs between candidates (the caller's event loop: signals, a spinner).
 */
export async function chooseMixture(
  train: Float32Array,
  val: Float32Array,
  dim: number,
  rng: Rng,
  pause: () => Promise<void> = () => Promise.resolve(),
): Promise<{ params: MixtureParams; valLogLik: number }> {
  const rows = train.length / dim;
  let best: { params: MixtureParams; valLogLik: number } | null = null;
  for (const K of COMPONENT_CHOICES) {
    if (K > supportedComponents(rows, dim)) break;
    await pause();
    const params = fitMixture(train, dim, K, rng);
    const valLogLik = mixtureLogLik(params, val, dim);
    // Validation log-likelihood rises with K up to about the data's number of clusters
    // and then falls: the first K that does not improve ends the search.
    if (best && valLogLik <= best.valLogLik) break;
    best = { params, valLogLik };
  }
  return best!;
}

/** k-means++: each next centre is a row drawn with probability ∝ squared distance to the nearest centre. */
function seedMeans(x: Float64Array, n: number, dim: number, K: number, rng: Rng, out: Float64Array): void {
  const dist = new Float64Array(n).fill(Infinity);
  let pick = Math.min(n - 1, Math.floor(rng.uniform() * n));
  for (let k = 0; k < K; k++) {
    for (let d = 0; d < dim; d++) out[k * dim + d] = x[pick * dim + d];
    let total = 0;
    for (let i = 0; i < n; i++) {
      let q = 0;
      for (let d = 0; d < dim; d++) {
        const e = x[i * dim + d] - out[k * dim + d];
        q += e * e;
      }
      if (q < dist[i]) dist[i] = q;
      total += dist[i];
    }
    let u = rng.uniform() * total;
    pick = n - 1;
    for (let i = 0; i < n; i++) {
      u -= dist[i];
      if (u <= 0) {
        pick = i;
        break;
      }
    }
  }
}

/**
 * The mixture with its coordinates reordered: coordinate j of the result is coordinate
 * `perm[j]` of `m`. EM fits in data coordinates, but a flow whose couplings are the identity
 * still permutes (basePermutation), so its base must be reordered to match.
 */
export function permuteMixture(m: MixtureParams, perm: readonly number[]): MixtureParams {
  const K = m.logits.length;
  const D = perm.length;
  const reorder = (a: Float32Array): Float32Array => Float32Array.from(a, (_, i) => a[Math.floor(i / D) * D + perm[i % D]]);
  return { logits: Float32Array.from(m.logits), means: reorder(m.means), logStd: reorder(m.logStd) };
}

/** How many entries a K-component mixture base adds at the end of a flow's parameter vector. */
export function mixtureSize(dim: number, K: number): number {
  return K * (1 + 2 * dim);
}

/** A copy of the mixture base's parameters: the last mixtureSize(dim, K) entries of `params`. */
export function mixtureOf(params: Float32Array, dim: number, K: number): MixtureParams {
  const start = params.length - mixtureSize(dim, K);
  return {
    logits: params.slice(start, start + K),
    means: params.slice(start + K, start + K + K * dim),
    logStd: params.slice(start + K + K * dim),
  };
}

/** Writes `m` into the tail of a flow's parameter vector (inverse of mixtureOf). */
export function setMixture(params: Float32Array, m: MixtureParams): void {
  const K = m.logits.length;
  const start = params.length - mixtureSize(m.means.length / K, K);
  params.set(m.logits, start);
  params.set(m.means, start + K);
  params.set(m.logStd, start + K + m.means.length);
}

/**
 * `rows` draws from the mixture, each component's standard deviations scaled by
 * `temperature` (the weights are not tempered).
 */
export function drawMixture(m: MixtureParams, dim: number, rows: number, temperature: number, rng: Rng): Float32Array {
  const K = m.logits.length;
  const max = Math.max(...m.logits);
  const cdf = new Float64Array(K);
  let acc = 0;
  for (let k = 0; k < K; k++) cdf[k] = acc += Math.exp(m.logits[k] - max);
  const out = new Float32Array(rows * dim);
  for (let i = 0; i < rows; i++) {
    const u = rng.uniform() * acc;
    let k = 0;
    while (k < K - 1 && cdf[k] <= u) k++;
    for (let d = 0; d < dim; d++) {
      out[i * dim + d] = m.means[k * dim + d] + temperature * Math.exp(m.logStd[k * dim + d]) * rng.normal();
    }
  }
  return out;
}
