/**
 * Couplings of a 2-D flow with the two coordinates held as separate [B,1] columns.
 *
 * Same maths and direction convention as coupling.ts with cond = trans = 1, but no layer
 * gathers, splits or concatenates: a permutation is a swap of two references, and the
 * network's [raw, t] output comes from two one-column heads. On wasm each of those copies
 * costs tens of µs however small the tensor, and with 64 couplings of 2×32 networks they
 * took about a third of a training step.
 */
import { tf, type Tensor } from '../tf.js';
import { boundedScale, hiddenActs, type CouplingConfig, type CouplingWeights } from './coupling.js';

/** One output head per column of the last layer: rnvp's raw log-scale and shift. */
export interface CouplingHeads {
  kernels: [Tensor, Tensor];
  /** The same kernels as [1, H] rows, for the backward pass. */
  kernelsT?: [Tensor, Tensor];
  biases: [Tensor, Tensor];
}

export type ColumnWeights = CouplingWeights & { heads?: CouplingHeads };

export interface ColumnCache {
  /** Inputs to each dense layer: a, h1, ..., hK. */
  acts: Tensor[];
  expS: Tensor | null;
  bExpS: Tensor | null;
  tanhRaw: Tensor | null;
}

export interface ColumnGrads {
  /** Gradients w.r.t. the conditioning and the transformed input column (null if not asked). */
  a: Tensor | null;
  b: Tensor | null;
  kernels: Tensor[];
  biases: Tensor[];
}

/**
 * rnvp's heads: the precomputed ones, else split from the last layer (when weights are
 * built from kernels directly, as autodiff references do).
 */
function headsOf(w: ColumnWeights): CouplingHeads {
  if (w.heads) return w.heads;
  const last = w.kernels.length - 1;
  const [k0, k1] = tf.split(w.kernels[last], 2, 1);
  const [b0, b1] = tf.split(w.biases[last], 2);
  return { kernels: [k0, k1], biases: [b0, b1] };
}

/** Coupling network on column `a`: (raw log-scale or null for nice, shift, dense inputs). */
function net(a: Tensor, w: ColumnWeights, cfg: CouplingConfig): { raw: Tensor | null; t: Tensor; acts: Tensor[] } {
  const acts = hiddenActs(a, w);
  const last = w.kernels.length - 1;
  const h = acts[last];
  if (cfg.type === 'nice') return { raw: null, t: tf.fused.matMul({ a: h, b: w.kernels[last], bias: w.biases[last] }), acts };
  const heads = headsOf(w);
  const raw = tf.fused.matMul({ a: h, b: heads.kernels[0], bias: heads.biases[0] });
  const t = tf.fused.matMul({ a: h, b: heads.kernels[1], bias: heads.biases[1] });
  return { raw, t, acts };
}

/** Data → base: y from (a, b); `logDet` is s per row as [B,1] (null for nice). */
export function inverse2d(
  a: Tensor,
  b: Tensor,
  w: ColumnWeights,
  cfg: CouplingConfig,
): { y: Tensor; logDet: Tensor | null; cache: ColumnCache } {
  const { raw, t, acts } = net(a, w, cfg);
  if (raw === null) return { y: tf.add(b, t), logDet: null, cache: { acts, expS: null, bExpS: null, tanhRaw: null } };
  const { s, tanhRaw } = boundedScale(raw, cfg);
  const expS = tf.exp(s);
  const bExpS = tf.mul(b, expS);
  return { y: tf.add(bExpS, t), logDet: s, cache: { acts, expS, bExpS, tanhRaw } };
}

/** Base → data: b from (a, y). */
export function forward2d(a: Tensor, y: Tensor, w: ColumnWeights, cfg: CouplingConfig): Tensor {
  const { raw, t } = net(a, w, cfg);
  if (raw === null) return tf.sub(y, t);
  const { s } = boundedScale(raw, cfg);
  return tf.mul(tf.sub(y, t), tf.exp(tf.neg(s)));
}

/** A [B,1] column as a [1,B] row: a reshape, where a transpose would copy. */
function row(col: Tensor): Tensor {
  return tf.reshape(col, [1, col.shape[0]!]);
}

/** Σ of a column as a [1] tensor (a full reduction: an axis-0 sum transposes first on wasm). */
function colSum(col: Tensor): Tensor {
  return tf.reshape(tf.sum(col), [1]);
}

/**
 * Backward of `inverse2d` for a loss L: `gA0`, `gY` = ∂L/∂(a, y) of the outputs,
 * `gLogDet` = ∂L/∂logDet for every row; `ones` as in couplingBackward.
 */
export function backward2d(
  gA0: Tensor,
  gY: Tensor,
  gLogDet: number,
  cache: ColumnCache,
  w: ColumnWeights,
  needInput: boolean,
  ones: Tensor,
): ColumnGrads {
  const K = w.kernels.length;
  const kernels = new Array<Tensor>(K);
  const biases = new Array<Tensor>(K);
  const hLast = cache.acts[K - 1];
  let gB: Tensor;
  // ∂L/∂(input of the last dense layer).
  let gH: Tensor;
  if (cache.tanhRaw) {
    const expS = cache.expS as Tensor;
    const bExpS = cache.bExpS as Tensor;
    const tanhRaw = cache.tanhRaw as Tensor;
    gB = tf.mul(gY, expS);
    // ∂L/∂s = gY·b·exp(s) + gLogDet;  ∂s/∂raw = 1 − tanh²(raw/c)
    const gRaw = tf.mul(tf.add(tf.mul(gY, bExpS), gLogDet), tf.sub(1, tf.square(tanhRaw)));
    // Kernel [H,2] in layout order: rows of [gRawᵀ·h; gYᵀ·h], transposed (a tiny copy).
    const rows = tf.concat([tf.matMul(row(gRaw), hLast), tf.matMul(row(gY), hLast)], 0);
    kernels[K - 1] = tf.transpose(rows);
    biases[K - 1] = tf.concat([colSum(gRaw), colSum(gY)]);
    const heads = headsOf(w);
    const kT = heads.kernelsT ?? [tf.reshape(heads.kernels[0], [1, -1]), tf.reshape(heads.kernels[1], [1, -1])];
    gH = tf.add(tf.matMul(gRaw, kT[0]), tf.matMul(gY, kT[1]));
  } else {
    gB = gY;
    kernels[K - 1] = tf.reshape(tf.matMul(row(gY), hLast), [-1, 1]);
    biases[K - 1] = colSum(gY);
    const kT = w.kernelsT ? w.kernelsT[K - 1] : tf.reshape(w.kernels[K - 1], [1, -1]);
    gH = tf.matMul(gY, kT);
  }
  // gIn: ∂L/∂acts[k+1], the output of hidden layer k; its ReLU passes it where positive.
  let gIn = gH;
  for (let k = K - 2; k >= 0; k--) {
    const input = cache.acts[k];
    const g = tf.mul(gIn, tf.step(cache.acts[k + 1]));
    // k = 0: the input is column a, so aᵀ·g is a row times a matrix.
    kernels[k] = k === 0 ? tf.matMul(row(input), g) : tf.matMul(tf.transpose(input), g);
    biases[k] = tf.reshape(tf.matMul(ones, g), [-1]);
    if (k === 0 && !needInput) break;
    gIn = tf.matMul(g, w.kernelsT ? w.kernelsT[k] : tf.transpose(w.kernels[k]));
  }
  const gA = needInput ? gIn : null;
  return { a: gA ? tf.add(gA0, gA) : null, b: needInput ? gB : null, kernels, biases };
}
