/**
 * One coupling layer: forward, inverse, and a hand-written backward pass for the inverse.
 *
 * Inverse (data → base), input u:  v = u[:, perm];  a = v[:, :d];  b = v[:, d:]
 *   rnvp: [raw, t] = net(a);  s = c·tanh(raw/c);  y = b·exp(s) + t;  log|det| = Σ s
 *   nice: t = net(a);  y = b + t;  log|det| = 0
 *   output [a, y]
 * Forward (base → data) undoes it: b = (y − t)·exp(−s).
 *
 * The backward pass is written out instead of using autodiff because TensorFlow.js's
 * stock matMul gradient multiplies transposed operands, which the wasm backend runs in a
 * slow naive loop; explicit transposes keep every product on the fast GEMM path, and a
 * hand-written pass needs far fewer ops per step.
 */
import { tf, type Tensor } from '../tf.js';
import { splitSizes, type FlowType } from './spec.js';

export interface CouplingWeights {
  kernels: Tensor[];
  /** Transposed kernels, for the backward pass (made in JS: cheaper than a transpose op). */
  kernelsT?: Tensor[];
  biases: Tensor[];
  /** Gather indices for the input permutation, or null when it is the identity. */
  perm: Tensor | null;
  invPerm: Tensor | null;
  /**
   * The same permutations as one-hot [D, D] matrices, for autodiff (the gather gradient
   * needs a kernel the wasm backend lacks; a product with a 0/1 matrix is exact).
   */
  permMatrix?: Tensor | null;
  invPermMatrix?: Tensor | null;
}

export interface CouplingConfig {
  type: FlowType;
  dim: number;
  scaleBound: number;
}

/** What the backward pass needs from the inverse pass. */
export interface CouplingCache {
  /** Inputs to each dense layer: a, h1, ..., hK. */
  acts: Tensor[];
  /** exp(s), b·exp(s) and tanh(raw/c) (rnvp only). */
  expS: Tensor | null;
  bExpS: Tensor | null;
  tanhRaw: Tensor | null;
}

export interface CouplingGrads {
  /** Gradient w.r.t. the layer input, or null when not asked for. */
  input: Tensor | null;
  kernels: Tensor[];
  biases: Tensor[];
}

/**
 * aᵀ·b without a transposed-operand matMul (slow on wasm): transpose the narrower side,
 * so the big product always runs on untransposed operands.
 */
function transposedProduct(a: Tensor, b: Tensor): Tensor {
  return a.shape[1]! > b.shape[1]!
    ? tf.transpose(tf.matMul(tf.transpose(b), a))
    : tf.matMul(tf.transpose(a), b);
}

function kernelT(w: CouplingWeights, k: number): Tensor {
  return w.kernelsT ? w.kernelsT[k] : tf.transpose(w.kernels[k]);
}

/**
 * The coupling network's hidden ReLU layers: the inputs of every dense layer (a, h1, ...,
 * hK); the last one feeds the output layer.
 */
export function hiddenActs(a: Tensor, w: CouplingWeights): Tensor[] {
  const acts: Tensor[] = [a];
  for (let k = 0; k < w.kernels.length - 1; k++) {
    acts.push(tf.fused.matMul({ a: acts[k], b: w.kernels[k], bias: w.biases[k], activation: 'relu' }));
  }
  return acts;
}

/** Coupling network: ReLU MLP; returns the output and the inputs of every dense layer. */
function net(a: Tensor, w: CouplingWeights): { out: Tensor; acts: Tensor[] } {
  const acts = hiddenActs(a, w);
  const last = w.kernels.length - 1;
  const out = tf.fused.matMul({ a: acts[last], b: w.kernels[last], bias: w.biases[last] });
  return { out, acts };
}

function permute(x: Tensor, idx: Tensor | null, matrix?: Tensor | null): Tensor {
  if (matrix) return tf.matMul(x, matrix);
  return idx ? tf.gather(x, idx, 1) : x;
}

/** s = c·tanh(raw/c), and tanh(raw/c) for the backward pass. */
export function boundedScale(raw: Tensor, cfg: CouplingConfig): { s: Tensor; tanhRaw: Tensor } {
  const tanhRaw = tf.tanh(tf.mul(raw, 1 / cfg.scaleBound));
  return { s: tf.mul(tanhRaw, cfg.scaleBound), tanhRaw };
}

function scaleAndShift(o: Tensor, cfg: CouplingConfig): { s: Tensor; t: Tensor; tanhRaw: Tensor } {
  const { trans } = splitSizes(cfg.dim);
  const [raw, t] = tf.split(o, [trans, trans], 1) ;
  return { ...boundedScale(raw, cfg), t };
}

/** Data → base. `logDet` is per row (absent for nice: it is zero). */
export function couplingInverse(
  u: Tensor,
  w: CouplingWeights,
  cfg: CouplingConfig,
): { out: Tensor; logDet: Tensor | null; cache: CouplingCache } {
  const { cond, trans } = splitSizes(cfg.dim);
  const v = permute(u, w.perm, w.permMatrix);
  const [a, b] = tf.split(v, [cond, trans], 1) ;
  const { out: o, acts } = net(a, w);
  if (cfg.type === 'nice') {
    const y = tf.add(b, o);
    return { out: tf.concat([a, y], 1), logDet: null, cache: { acts, expS: null, bExpS: null, tanhRaw: null } };
  }
  const { s, t, tanhRaw } = scaleAndShift(o, cfg);
  const expS = tf.exp(s);
  const bExpS = tf.mul(b, expS);
  const y = tf.add(bExpS, t);
  return {
    out: tf.concat([a, y], 1),
    logDet: tf.sum(s, 1),
    cache: { acts, expS, bExpS, tanhRaw },
  };
}

/** Base → data. `logDet` (per row) is log|det| of this direction; computed only if asked. */
export function couplingForward(
  z: Tensor,
  w: CouplingWeights,
  cfg: CouplingConfig,
  withLogDet = false,
): { out: Tensor; logDet: Tensor | null } {
  const { cond, trans } = splitSizes(cfg.dim);
  const [a, y] = tf.split(z, [cond, trans], 1) ;
  const { out: o } = net(a, w);
  let b: Tensor;
  let logDet: Tensor | null = null;
  if (cfg.type === 'nice') {
    b = tf.sub(y, o);
  } else {
    const { s, t } = scaleAndShift(o, cfg);
    b = tf.mul(tf.sub(y, t), tf.exp(tf.neg(s)));
    if (withLogDet) logDet = tf.neg(tf.sum(s, 1));
  }
  return { out: permute(tf.concat([a, b], 1), w.invPerm, w.invPermMatrix), logDet };
}

/**
 * Backward of the inverse pass for a loss L. `gOut` = ∂L/∂output; `gLogDet` = ∂L/∂logDet
 * for every row (the same number for all rows, e.g. −1/B for a mean NLL). `ones` is a
 * [1,B] row of ones, made once per batch: Σ over rows as a [1,B]·[B,n] product is ~10×
 * faster than a column sum on wasm.
 */
export function couplingBackward(
  gOut: Tensor,
  gLogDet: number,
  cache: CouplingCache,
  w: CouplingWeights,
  cfg: CouplingConfig,
  needInput: boolean,
  ones: Tensor,
): CouplingGrads {
  const { cond, trans } = splitSizes(cfg.dim);
  const [gA0, gY] = tf.split(gOut, [cond, trans], 1) ;
  let gB: Tensor;
  let gO: Tensor;
  if (cfg.type === 'nice') {
    gB = gY;
    gO = gY;
  } else {
    const expS = cache.expS as Tensor;
    const bExpS = cache.bExpS as Tensor;
    const tanhRaw = cache.tanhRaw as Tensor;
    gB = tf.mul(gY, expS);
    // ∂L/∂s = gY·b·exp(s) + gLogDet;  ∂s/∂raw = 1 − tanh²(raw/c)
    const gS = tf.add(tf.mul(gY, bExpS), gLogDet);
    const gRaw = tf.mul(gS, tf.sub(1, tf.square(tanhRaw)));
    gO = tf.concat([gRaw, gY], 1);
  }
  const K = w.kernels.length;
  const kernels = new Array<Tensor>(K);
  const biases = new Array<Tensor>(K);
  let g = gO;
  let gA: Tensor | null = null;
  for (let k = K - 1; k >= 0; k--) {
    const input = cache.acts[k];
    kernels[k] = transposedProduct(input, g);
    biases[k] = tf.reshape(tf.matMul(ones, g), [-1]);
    if (k === 0) {
      if (cond > 0) gA = tf.matMul(g, kernelT(w, 0));
    } else {
      // ReLU: pass the gradient where the activation (= this layer's input) was positive.
      g = tf.mul(tf.matMul(g, kernelT(w, k)), tf.step(input));
    }
  }
  let input: Tensor | null = null;
  if (needInput) {
    const gCond = gA ? tf.add(gA0, gA) : gA0;
    input = permute(tf.concat([gCond, gB], 1), w.invPerm);
  }
  return { input, kernels, biases };
}
