/**
 * Draws from p(x_missing | x_observed) for many partly observed rows at once, given only
 * an unnormalised log density of whole rows (the flow's) and a way to sample whole rows.
 *
 * 1. Start (sampling importance resampling): for each row, M candidates for the missing
 *    coordinates come from a kernel density around M model draws (their missing
 *    coordinates, bandwidth h). Weights p(x_obs, x_mis) / q(x_mis) are exact up to a
 *    per-row constant, so resampling the chains' starting points from them puts the
 *    chains roughly where the conditional has its mass, in proportion across modes.
 * 2. Refine (Metropolis–Hastings on the missing block of each row, several chains per
 *    row). Two moves alternate: a random walk y = x + σ·L·ε in standardised units, and
 *    (every third sweep) an independence proposal from q, which lets a chain move
 *    between modes with the right odds. During burn-in σ is adapted per chain towards a
 *    target acceptance rate (Robbins–Monro), and halfway through L is re-estimated from
 *    the chains' own covariance (pooled per row); both are frozen afterwards, so the kept
 *    states come from fixed Metropolis–Hastings kernels whose stationary law is the
 *    conditional.
 *
 * Each sweep evaluates every chain of every row in one call to `logDensity`, which is
 * what makes this fast on a batched tensor backend.
 */
import type { Rng } from '../rng.js';
import { cholesky, logSumExp, lowerTimes } from './linalg.js';

export interface Density {
  dim: number;
  /** Standardisation (the sampler moves in (x − mean) / std units). */
  mean: ArrayLike<number>;
  std: ArrayLike<number>;
  /** Log density (any additive constant) of each of `n` row-major rows. */
  logDensity(rows: Float32Array, n: number): Float32Array;
  /** `n` draws of whole rows from the model. */
  sample(n: number, rng: Rng): Float32Array;
}

export interface SamplerSettings {
  /** Independent chains per row. */
  chains: number;
  /** Draws kept per row (taken in turn from the chains). */
  draws: number;
  /** Adaptation sweeps before anything is kept. */
  burnIn: number;
  /** Sweeps between kept draws of one chain. */
  thin: number;
  /** Candidates per row for the starting points. */
  candidates: number;
  /** false: only the posterior mean is wanted (no draws are stored). */
  keepDraws: boolean;
}

export interface PartialRows {
  rows: number;
  /** rows × dim, data units; entries where `missing` is 1 are ignored. */
  values: Float32Array;
  /** rows × dim, 1 where the value is to be imputed. Every row has at least one. */
  missing: Uint8Array;
}

export interface SamplerResult {
  /** rows × draws × dim: whole rows, observed entries copied from the input (empty unless keepDraws). */
  draws: Float32Array;
  /** rows × dim: average over every chain state of the sampling phase. */
  mean: Float64Array;
  /** Fraction of accepted random-walk proposals after burn-in. */
  acceptance: number;
  /** Fraction of accepted independence (jump) proposals after burn-in. */
  jumpAcceptance: number;
}

/** Where each row's missing coordinates live in the flat per-row arrays. */
interface Layout {
  rows: number;
  dim: number;
  /** Number of missing coordinates per row. */
  d: Int32Array;
  /** Prefix sums of d (length rows + 1): row r's coordinates are coords[off[r] .. off[r+1]). */
  off: Int32Array;
  coords: Int32Array;
  /** Prefix sums of d² for the per-row d×d matrices. */
  sqOff: Int32Array;
}

function layoutOf(p: PartialRows, dim: number): Layout {
  const d = new Int32Array(p.rows);
  const off = new Int32Array(p.rows + 1);
  const sqOff = new Int32Array(p.rows + 1);
  for (let r = 0; r < p.rows; r++) {
    let n = 0;
    for (let k = 0; k < dim; k++) n += p.missing[r * dim + k];
    if (n === 0) throw new Error(`row ${r} has nothing to impute`);
    d[r] = n;
    off[r + 1] = off[r] + n;
    sqOff[r + 1] = sqOff[r] + n * n;
  }
  const coords = new Int32Array(off[p.rows]);
  for (let r = 0; r < p.rows; r++) {
    let at = off[r];
    for (let k = 0; k < dim; k++) if (p.missing[r * dim + k]) coords[at++] = k;
  }
  return { rows: p.rows, dim, d, off, coords, sqOff };
}

const ROBBINS_MONRO_DECAY = 0.6;
/** Every JUMP_EVERY-th sweep is an independence move from the kernel proposal (lets chains change modes). */
const JUMP_EVERY = 3;
const LOG_SIGMA_MIN = Math.log(1e-4);
const LOG_SIGMA_MAX = Math.log(10);

function targetAcceptance(d: number): number {
  return d === 1 ? 0.44 : 0.3;
}

function startLogSigma(d: number): number {
  return Math.log(2.38 / Math.sqrt(d));
}

export function imputeRows(density: Density, p: PartialRows, s: SamplerSettings, rng: Rng): SamplerResult {
  const D = density.dim;
  const L = layoutOf(p, D);
  const R = p.rows;
  const c = s.chains;
  const C = R * c;
  const mean = Float64Array.from({ length: D }, (_, k) => density.mean[k]);
  const std = Float64Array.from({ length: D }, (_, k) => density.std[k]);
  const maxD = L.d.reduce((a, b) => Math.max(a, b), 0);

  // Chain state: standardised missing coordinates (u), whole rows in data units (x), log density.
  const u = new Float64Array(c * L.off[R]);
  const uAt = (ch: number): number => {
    const r = Math.floor(ch / c);
    return c * L.off[r] + (ch - r * c) * L.d[r];
  };
  const x = new Float32Array(C * D);
  for (let ch = 0; ch < C; ch++) x.set(p.values.subarray(Math.floor(ch / c) * D, Math.floor(ch / c) * D + D), ch * D);
  const lp = new Float64Array(C);
  const chol = new Float64Array(L.sqOff[R]);
  const logSigma = new Float64Array(C);

  const kernel = initialise(density, p, s, rng, L, { u, uAt, x, lp, chol, mean, std, chains: c });
  for (let ch = 0; ch < C; ch++) logSigma[ch] = startLogSigma(L.d[Math.floor(ch / c)]);

  const perChain = Math.ceil(s.draws / c);
  const sampleSweeps = perChain * s.thin;
  const total = s.burnIn + sampleSweeps;
  // Halfway through burn-in, L is re-estimated from the chains' states of the quarter
  // before; the second half adapts σ to the new shape.
  const windows = s.burnIn >= 20 ? [{ from: Math.floor(s.burnIn / 4), to: Math.floor(s.burnIn / 2) }] : [];
  const winSum = new Float64Array(L.off[R]);
  const winOuter = new Float64Array(L.sqOff[R]);
  let winCount = 0;
  let sinceReset = 0;

  const draws = new Float32Array(s.keepDraws ? R * s.draws * D : 0);
  const meanSum = new Float64Array(R * D);
  const y = new Float32Array(x);
  const uy = new Float64Array(c * L.off[R]);
  const eps = new Float64Array(maxD);
  const step = new Float64Array(maxD);
  const walks = { accepted: 0, proposed: 0 };
  const jumps = { accepted: 0, proposed: 0 };

  // Log proposal-density correction of each chain's move: 0 for the symmetric random walk.
  const correction = new Float64Array(C);
  for (let sweep = 0; sweep < total; sweep++) {
    const burning = sweep < s.burnIn;
    const jump = sweep % JUMP_EVERY === JUMP_EVERY - 1;
    // Propose for every chain.
    for (let ch = 0; ch < C; ch++) {
      const r = Math.floor(ch / c);
      const d = L.d[r];
      const at = uAt(ch);
      if (jump) {
        correction[ch] = kernel.propose(r, u, at, uy, rng);
      } else {
        for (let t = 0; t < d; t++) eps[t] = rng.normal();
        lowerTimes(chol, L.sqOff[r], d, eps, step);
        const sigma = Math.exp(logSigma[ch]);
        for (let t = 0; t < d; t++) uy[at + t] = u[at + t] + sigma * step[t];
      }
      for (let t = 0; t < d; t++) {
        const k = L.coords[L.off[r] + t];
        y[ch * D + k] = mean[k] + std[k] * uy[at + t];
      }
    }
    const lpy = density.logDensity(y, C);
    // Accept or reject; adapt the random walk's step size while burning in.
    const gamma = 1 / Math.pow(sinceReset + 1, ROBBINS_MONRO_DECAY);
    for (let ch = 0; ch < C; ch++) {
      const r = Math.floor(ch / c);
      const d = L.d[r];
      const at = uAt(ch);
      const next = lpy[ch];
      const delta = Number.isFinite(next) ? next - lp[ch] + (jump ? correction[ch] : 0) : Number.NEGATIVE_INFINITY;
      const accProb = delta >= 0 ? 1 : Math.exp(delta);
      if (rng.uniform() < accProb) {
        lp[ch] = next;
        for (let t = 0; t < d; t++) {
          const k = L.coords[L.off[r] + t];
          u[at + t] = uy[at + t];
          x[ch * D + k] = y[ch * D + k];
        }
        if (!burning) (jump ? jumps : walks).accepted += 1;
      } else {
        for (let t = 0; t < d; t++) {
          const k = L.coords[L.off[r] + t];
          y[ch * D + k] = x[ch * D + k];
        }
      }
      if (burning) {
        if (!jump) {
          const ls = logSigma[ch] + gamma * (accProb - targetAcceptance(d));
          logSigma[ch] = Math.min(LOG_SIGMA_MAX, Math.max(LOG_SIGMA_MIN, ls));
        }
      } else {
        (jump ? jumps : walks).proposed += 1;
      }
    }
    if (!jump) sinceReset += 1;

    if (burning) {
      const w = windows.find((win) => sweep >= win.from && sweep < win.to);
      if (w) {
        accumulateWindow(L, u, uAt, c, winSum, winOuter);
        winCount += c;
        if (sweep === w.to - 1) {
          if (updateProposal(L, winSum, winOuter, winCount, chol)) {
            for (let ch = 0; ch < C; ch++) logSigma[ch] = startLogSigma(L.d[Math.floor(ch / c)]);
            sinceReset = 0;
          }
          winSum.fill(0);
          winOuter.fill(0);
          winCount = 0;
        }
      }
      continue;
    }

    // Sampling phase: average every state; keep every thin-th as a draw.
    for (let ch = 0; ch < C; ch++) {
      const r = Math.floor(ch / c);
      for (let k = 0; k < D; k++) meanSum[r * D + k] += x[ch * D + k];
    }
    const kept = sweep - s.burnIn + 1;
    if (s.keepDraws && kept % s.thin === 0) {
      const q = kept / s.thin - 1;
      for (let ch = 0; ch < C; ch++) {
        const r = Math.floor(ch / c);
        const index = q * c + (ch - r * c);
        if (index < s.draws) draws.set(x.subarray(ch * D, ch * D + D), (r * s.draws + index) * D);
      }
    }
  }

  const states = c * sampleSweeps;
  const meanOut = new Float64Array(R * D);
  for (let i = 0; i < R * D; i++) meanOut[i] = p.missing[i] ? meanSum[i] / states : p.values[i];
  const rate = (m: { accepted: number; proposed: number }): number => (m.proposed > 0 ? m.accepted / m.proposed : Number.NaN);
  return { draws, mean: meanOut, acceptance: rate(walks), jumpAcceptance: rate(jumps) };
}

interface ChainState {
  u: Float64Array;
  uAt: (ch: number) => number;
  x: Float32Array;
  lp: Float64Array;
  chol: Float64Array;
  mean: Float64Array;
  std: Float64Array;
  chains: number;
}

/**
 * The kernel density q around model draws that the starting points are drawn from, also
 * used as an independence proposal: a chain can jump to wherever q puts mass, e.g. to
 * another mode of the conditional, which a random walk would rarely reach.
 */
class KernelProposal {
  private readonly sq: Float64Array;

  constructor(
    private readonly L: Layout,
    /** M × dim standardised model draws. */
    private readonly centres: Float64Array,
    private readonly M: number,
    /** Per-row bandwidth. */
    private readonly bandwidth: Float64Array,
  ) {
    this.sq = new Float64Array(M);
  }

  /** log q of the point at `v[at..]` for row r, up to a per-row constant. */
  logQ(r: number, v: Float64Array, at: number): number {
    const { L, M } = this;
    const d = L.d[r];
    const h = this.bandwidth[r];
    for (let l = 0; l < M; l++) {
      let sq = 0;
      for (let t = 0; t < d; t++) {
        const diff = v[at + t] - this.centres[l * L.dim + L.coords[L.off[r] + t]];
        sq += diff * diff;
      }
      this.sq[l] = (-0.5 * sq) / (h * h);
    }
    return logSumExp(this.sq, M);
  }

  /** Writes a draw from q for row r at `out[at..]`; returns log q(current) − log q(draw). */
  propose(r: number, current: Float64Array, at: number, out: Float64Array, rng: Rng): number {
    const { L } = this;
    const d = L.d[r];
    const h = this.bandwidth[r];
    const l = rng.int(this.M);
    for (let t = 0; t < d; t++) out[at + t] = this.centres[l * L.dim + L.coords[L.off[r] + t]] + h * rng.normal();
    return this.logQ(r, current, at) - this.logQ(r, out, at);
  }
}

/** Starting points by sampling importance resampling, and a first proposal shape. */
function initialise(density: Density, p: PartialRows, s: SamplerSettings, rng: Rng, L: Layout, st: ChainState): KernelProposal {
  const D = L.dim;
  const R = L.rows;
  const M = Math.max(1, s.candidates);
  const c = st.chains;
  // Model draws, standardised: the centres of each row's kernel proposal.
  const model = density.sample(M, rng);
  const centres = new Float64Array(M * D);
  for (let j = 0; j < M; j++) for (let k = 0; k < D; k++) centres[j * D + k] = (model[j * D + k] - st.mean[k]) / st.std[k];

  const cand = new Float32Array(R * M * D);
  const candU = new Float64Array(M * L.off[R]);
  const bandwidth = new Float64Array(R);
  for (let r = 0; r < R; r++) {
    const d = L.d[r];
    const h = Math.pow(4 / (d + 2), 1 / (d + 4)) * Math.pow(M, -1 / (d + 4));
    bandwidth[r] = h;
    for (let j = 0; j < M; j++) {
      const row = (r * M + j) * D;
      cand.set(p.values.subarray(r * D, r * D + D), row);
      for (let t = 0; t < d; t++) {
        const k = L.coords[L.off[r] + t];
        const v = centres[j * D + k] + h * rng.normal();
        candU[M * L.off[r] + j * d + t] = v;
        cand[row + k] = st.mean[k] + st.std[k] * v;
      }
    }
  }
  const lpc = density.logDensity(cand, R * M);

  const kernel = new KernelProposal(L, centres, M, bandwidth);
  const logw = new Float64Array(M);
  const w = new Float64Array(M);
  const cov = new Float64Array(L.sqOff[R]);
  for (let r = 0; r < R; r++) {
    const d = L.d[r];
    const h = bandwidth[r];
    const base = M * L.off[r];
    for (let j = 0; j < M; j++) {
      const v = lpc[r * M + j];
      logw[j] = Number.isFinite(v) ? v - kernel.logQ(r, candU, base + j * d) : Number.NEGATIVE_INFINITY;
    }
    const norm = logSumExp(logw, M);
    let ess = 0;
    if (norm === Number.NEGATIVE_INFINITY) {
      w.fill(1 / M);
    } else {
      let sw2 = 0;
      for (let j = 0; j < M; j++) {
        w[j] = Math.exp(logw[j] - norm);
        sw2 += w[j] * w[j];
      }
      ess = 1 / sw2;
    }
    // Systematic resampling of the c starting points.
    const start = rng.uniform() / c;
    let cum = w[0];
    let j = 0;
    for (let i = 0; i < c; i++) {
      const target = start + i / c;
      while (cum < target && j < M - 1) cum += w[++j];
      const ch = r * c + i;
      const at = st.uAt(ch);
      for (let t = 0; t < d; t++) {
        const k = L.coords[L.off[r] + t];
        st.u[at + t] = candU[base + j * d + t];
        st.x[ch * D + k] = cand[(r * M + j) * D + k];
      }
      const v = lpc[r * M + j];
      st.lp[ch] = Number.isFinite(v) ? v : Number.NEGATIVE_INFINITY;
    }
    // First proposal shape: the weighted candidates' covariance when the weights are not
    // degenerate, else a small isotropic step (the step size adapts either way).
    const so = L.sqOff[r];
    let ok = false;
    if (ess >= d + 2) {
      const mu = new Float64Array(d);
      for (let jj = 0; jj < M; jj++) for (let t = 0; t < d; t++) mu[t] += w[jj] * candU[base + jj * d + t];
      for (let a = 0; a < d; a++) {
        for (let b = 0; b < d; b++) {
          let sum = 0;
          for (let jj = 0; jj < M; jj++) sum += w[jj] * (candU[base + jj * d + a] - mu[a]) * (candU[base + jj * d + b] - mu[b]);
          cov[so + a * d + b] = sum;
        }
      }
      ok = regularisedCholesky(cov, so, d, st.chol);
    }
    if (!ok) {
      for (let a = 0; a < d * d; a++) st.chol[so + a] = 0;
      for (let a = 0; a < d; a++) st.chol[so + a * d + a] = h / 2;
    }
  }
  return kernel;
}

/** Adds every chain's current state to its row's window sums. */
function accumulateWindow(L: Layout, u: Float64Array, uAt: (ch: number) => number, c: number, sum: Float64Array, outer: Float64Array): void {
  for (let r = 0; r < L.rows; r++) {
    const d = L.d[r];
    for (let i = 0; i < c; i++) {
      const at = uAt(r * c + i);
      for (let a = 0; a < d; a++) {
        sum[L.off[r] + a] += u[at + a];
        for (let b = 0; b <= a; b++) outer[L.sqOff[r] + a * d + b] += u[at + a] * u[at + b];
      }
    }
  }
}

/** Sets each row's proposal shape to the Cholesky factor of its window covariance. */
function updateProposal(L: Layout, sum: Float64Array, outer: Float64Array, n: number, chol: Float64Array): boolean {
  if (n < 2) return false;
  const cov = new Float64Array(L.sqOff[L.rows]);
  for (let r = 0; r < L.rows; r++) {
    const d = L.d[r];
    const so = L.sqOff[r];
    for (let a = 0; a < d; a++) {
      for (let b = 0; b <= a; b++) {
        const v = outer[so + a * d + b] / n - (sum[L.off[r] + a] / n) * (sum[L.off[r] + b] / n);
        cov[so + a * d + b] = v;
        cov[so + b * d + a] = v;
      }
    }
    // Chains that never moved give a zero covariance: the old shape stays then.
    regularisedCholesky(cov, so, d, chol);
  }
  return true;
}

/** Cholesky of A + ridge (relative to its mean variance); false if A is degenerate. */
function regularisedCholesky(a: Float64Array, off: number, d: number, out: Float64Array): boolean {
  let trace = 0;
  for (let t = 0; t < d; t++) trace += a[off + t * d + t];
  const meanVar = trace / d;
  if (!(meanVar > 1e-12) || !Number.isFinite(meanVar)) return false;
  const reg = a.slice(off, off + d * d);
  for (let t = 0; t < d; t++) reg[t * d + t] += 1e-3 * meanVar + 1e-10;
  const tmp = new Float64Array(d * d);
  if (!cholesky(reg, 0, d, tmp, 0)) return false;
  out.set(tmp, off);
  return true;
}
