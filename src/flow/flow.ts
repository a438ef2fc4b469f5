/**
 * A whole flow: standardisation followed by coupling layers.
 *
 * Parameters are one flat Float32Array in JS (layout: spec.paramLayout); weight tensors
 * are made from it on demand. Keeping the optimiser state in JS avoids dozens of tiny
 * backend ops per step and the wasm backend's slow slicing of large tensors.
 * Standardisation x0 = (x − mean) / std is a fixed affine map whose log-determinant,
 * −Σ log std, is added so every density is in the data's original units.
 */
import { tf, type Scalar, type Tensor } from '../tf.js';
import {
  couplingBackward,
  couplingForward,
  couplingInverse,
  type CouplingCache,
  type CouplingConfig,
  type CouplingWeights,
} from './coupling.js';
import { backward2d, forward2d, inverse2d, type ColumnCache, type ColumnWeights, type CouplingHeads } from './coupling2d.js';
import { invertPermutation, isIdentity, paramCount, paramLayout, type FlowSpec, type ParamEntry } from './spec.js';

const HALF_LOG_2PI = 0.5 * Math.log(2 * Math.PI);

/** A learned diagonal Gaussian mixture base: logits [K], means [K,D], log std [K,D]. */
export interface MixtureWeights {
  logits: Tensor;
  means: Tensor;
  logStd: Tensor;
}

/**
 * Weight tensors of a whole flow: one entry per coupling, plus NICE's log-scales σ and a
 * mixture base if any.
 */
export type FlowWeights = ColumnWeights[] & { logScale?: Tensor; mixture?: MixtureWeights };

export interface Standardization {
  mean: number[];
  std: number[];
}

export class Flow {
  readonly spec: FlowSpec;
  readonly standardization: Standardization;
  readonly size: number;
  /** Σ log std: standardised-space NLL + logStdSum = NLL in original units. */
  readonly logStdSum: number;
  private readonly cfg: CouplingConfig;
  private readonly layout: ParamEntry[];
  private readonly perms: { perm: Tensor | null; invPerm: Tensor | null }[];
  private readonly mean: Tensor;
  private readonly std: Tensor;
  /**
   * 2-D flows run on two [B,1] columns (coupling2d.ts): per layer, whether its permutation
   * swaps them; null above 2-D.
   */
  private readonly swaps: boolean[] | null;

  constructor(spec: FlowSpec, standardization: Standardization) {
    this.spec = spec;
    this.standardization = standardization;
    this.cfg = { type: spec.type, dim: spec.dim, scaleBound: spec.scaleBound };
    this.layout = paramLayout(spec);
    this.size = paramCount(spec);
    this.logStdSum = standardization.std.reduce((a, s) => a + Math.log(s), 0);
    // Long-lived constants, made outside any tidy and released by dispose().
    this.perms = spec.permutations.map((p) =>
      isIdentity(p)
        ? { perm: null, invPerm: null }
        : { perm: tf.tensor1d(p, 'int32'), invPerm: tf.tensor1d(invertPermutation(p), 'int32') },
    );
    this.mean = tf.tensor1d(standardization.mean, 'float32');
    this.std = tf.tensor1d(standardization.std, 'float32');
    this.swaps = spec.dim === 2 ? spec.permutations.map((p) => p[0] === 1) : null;
  }

  dispose(): void {
    for (const p of this.perms) {
      p.perm?.dispose();
      p.invPerm?.dispose();
    }
    this.mean.dispose();
    this.std.dispose();
  }

  /**
   * Weight tensors for `params` (the caller disposes them, e.g. by tf.tidy or disposeWeights).
   * `forTraining` also makes the transposed kernels the backward pass multiplies by.
   */
  makeWeights(params: Float32Array, forTraining = false): FlowWeights {
    if (params.length !== this.size) throw new Error(`expected ${this.size} parameters, got ${params.length}`);
    const out: FlowWeights = [];
    let offset = 0;
    let e = 0;
    for (let l = 0; l < this.spec.layers; l++) {
      const kernels: Tensor[] = [];
      const kernelsT: Tensor[] = [];
      const biases: Tensor[] = [];
      let heads: CouplingHeads | undefined;
      for (let k = 0; k <= this.spec.hiddenLayers; k++) {
        const kernel = this.layout[e++];
        const values = params.subarray(offset, offset + kernel.size);
        kernels.push(tf.tensor(values, kernel.shape, 'float32'));
        const withHeads = k === this.spec.hiddenLayers && this.swaps !== null && this.spec.type === 'rnvp';
        const kT = forTraining || withHeads ? transpose(values, kernel.shape[0], kernel.shape[1]) : null;
        if (forTraining && kT) kernelsT.push(tf.tensor(kT, [kernel.shape[1], kernel.shape[0]], 'float32'));
        offset += kernel.size;
        const bias = this.layout[e++];
        const biasValues = params.subarray(offset, offset + bias.size);
        biases.push(tf.tensor(biasValues, bias.shape, 'float32'));
        offset += bias.size;
        if (withHeads && kT) heads = columnHeads(kT, biasValues, forTraining);
      }
      out.push({ kernels, biases, ...(forTraining ? { kernelsT } : {}), ...(heads ? { heads } : {}), ...this.perms[l] });
    }
    if (this.spec.diagScale) {
      out.logScale = tf.tensor1d(params.subarray(offset, offset + this.spec.dim), 'float32');
      offset += this.spec.dim;
    }
    if (this.spec.mixture) {
      const K = this.spec.mixture;
      const D = this.spec.dim;
      const take = (n: number, shape: number[]): Tensor => {
        const t = tf.tensor(params.subarray(offset, offset + n), shape, 'float32');
        offset += n;
        return t;
      };
      out.mixture = { logits: take(K, [K]), means: take(K * D, [K, D]), logStd: take(K * D, [K, D]) };
    }
    return out;
  }

  /** Per-layer permutations as one-hot matrices (for autodiff paths; caller disposes). */
  permutationMatrices(): { permMatrix: Tensor | null; invPermMatrix: Tensor | null }[] {
    const D = this.spec.dim;
    const oneHot = (perm: readonly number[]): Tensor => {
      // (x · P)[:, j] = x[:, perm[j]]  ⇔  P[perm[j], j] = 1
      const m = new Float32Array(D * D);
      perm.forEach((p, j) => {
        m[p * D + j] = 1;
      });
      return tf.tensor2d(m, [D, D]);
    };
    return this.spec.permutations.map((p) =>
      isIdentity(p) ? { permMatrix: null, invPermMatrix: null } : { permMatrix: oneHot(p), invPermMatrix: oneHot(invertPermutation(p)) },
    );
  }

  standardize(x: Tensor): Tensor {
    return tf.div(tf.sub(x, this.mean), this.std);
  }

  /** Data → base in standardised space: z and Σ log|det| per row. */
  toBase(x0: Tensor, weights: FlowWeights): { z: Tensor; logDet: Tensor } {
    if (this.swaps) return this.toBase2d(x0, weights, this.swaps);
    let u = x0;
    let logDet: Tensor = tf.zeros([x0.shape[0]]);
    for (const w of weights) {
      // One tidy per layer: only u and the running log-det outlive it, so a large chunk
      // never holds every layer's activations at once (the wasm heap keeps its peak).
      [u, logDet] = tf.tidy(() => {
        const r = couplingInverse(u, w, this.cfg);
        return [r.out, r.logDet ? tf.add(logDet, r.logDet) : logDet];
      });
    }
    if (weights.logScale) {
      u = tf.mul(u, tf.exp(weights.logScale));
      logDet = tf.add(logDet, tf.sum(weights.logScale));
    }
    return { z: u, logDet };
  }

  private toBase2d(x0: Tensor, weights: FlowWeights, swaps: boolean[]): { z: Tensor; logDet: Tensor } {
    let [c0, c1] = tf.split(x0, 2, 1);
    let logDet: Tensor = tf.zeros([x0.shape[0]!, 1]);
    weights.forEach((w, l) => {
      // One tidy per layer, as in toBase.
      [c0, c1, logDet] = tf.tidy(() => {
        const [a, b] = swaps[l] ? [c1, c0] : [c0, c1];
        const r = inverse2d(a, b, w, this.cfg);
        return [a, r.y, r.logDet ? tf.add(logDet, r.logDet) : logDet];
      });
    });
    return tf.tidy(() => {
      let u = tf.concat([c0, c1], 1);
      let ld = tf.reshape(logDet, [-1]);
      if (weights.logScale) {
        u = tf.mul(u, tf.exp(weights.logScale));
        ld = tf.add(ld, tf.sum(weights.logScale));
      }
      return { z: u, logDet: ld };
    });
  }

  /** Base → standardised data. */
  fromBase(z: Tensor, weights: FlowWeights): Tensor {
    if (this.swaps) {
      const swaps = this.swaps;
      let [c0, c1] = tf.split(unscale(z, weights), 2, 1);
      for (let l = weights.length - 1; l >= 0; l--) {
        // This layer's output is (a, y) = (c0, c1); its input, before the swap, is (a, b).
        const a = c0;
        const y = c1;
        const b = tf.tidy(() => forward2d(a, y, weights[l], this.cfg));
        [c0, c1] = swaps[l] ? [b, a] : [a, b];
      }
      return tf.concat([c0, c1], 1);
    }
    let u = unscale(z, weights);
    for (let l = weights.length - 1; l >= 0; l--) {
      const input = u;
      u = tf.tidy(() => couplingForward(input, weights[l], this.cfg).out);
    }
    return u;
  }

  /**
   * Base → data (original units) with log|det| of that map per row, differentiable:
   * what reverse-KL training needs.
   */
  fromBaseWithLogDet(z: Tensor, weights: FlowWeights): { x: Tensor; logDet: Tensor } {
    let u = unscale(z, weights);
    let logDet: Tensor = tf.zeros([z.shape[0]]);
    if (weights.logScale) logDet = tf.sub(logDet, tf.sum(weights.logScale));
    for (let l = weights.length - 1; l >= 0; l--) {
      const r = couplingForward(u, weights[l], this.cfg, true);
      u = r.out;
      if (r.logDet) logDet = tf.add(logDet, r.logDet);
    }
    return { x: tf.add(tf.mul(u, this.std), this.mean), logDet: tf.add(logDet, this.logStdSum) };
  }

  /** Log density (nats, original units) of each row of x. */
  logProb(weights: FlowWeights, x: Tensor): Tensor {
    return tf.tidy(() => this.logProbStandardized(weights, this.standardize(x)));
  }

  /** Log density (nats, original units) of rows already standardised. */
  logProbStandardized(weights: FlowWeights, x0: Tensor): Tensor {
    return tf.tidy(() => {
      const { z, logDet } = this.toBase(x0, weights);
      return tf.sub(tf.add(this.baseLogProb(z, weights), logDet), this.logStdSum);
    });
  }

  /** Log density of base points z [B,D] under the base distribution, per row [B]. */
  baseLogProb(z: Tensor, weights: FlowWeights): Tensor {
    if (weights.mixture) return tf.logSumExp(mixtureTerms(z, weights.mixture).comp, 1);
    return tf.sub(tf.mul(tf.sum(tf.square(z), 1), -0.5), this.spec.dim * HALF_LOG_2PI);
  }

  /** Maps base draws z to data space (original units). */
  sample(weights: FlowWeights, z: Tensor): Tensor {
    return tf.tidy(() => tf.add(tf.mul(this.fromBase(z, weights), this.std), this.mean));
  }

  /**
   * Mean negative log-likelihood of a batch of standardised rows (standardised space,
   * i.e. without the constant Σ log std) and its gradient w.r.t. the flat parameters.
   */
  lossAndGrad(weights: FlowWeights, x0: Tensor): { loss: Scalar; grad: Tensor } {
    if (this.swaps) return this.lossAndGrad2d(weights, x0, this.swaps);
    return tf.tidy(() => {
      const B = x0.shape[0];
      const caches: CouplingCache[] = [];
      let u = x0;
      let logDet: Tensor | null = null;
      for (const w of weights) {
        const r = couplingInverse(u, w, this.cfg);
        caches.push(r.cache);
        u = r.out;
        if (r.logDet) logDet = logDet ? tf.add(logDet, r.logDet) : r.logDet;
      }
      const grads: Tensor[] = new Array(this.layout.length);
      const { loss, gU } = this.baseLoss(u, logDet, weights, grads);
      let g = gU;
      const per = 2 * (this.spec.hiddenLayers + 1);
      const ones = tf.ones([1, B]);
      for (let l = weights.length - 1; l >= 0; l--) {
        const r = couplingBackward(g, -1 / B, caches[l], weights[l], this.cfg, l > 0, ones);
        for (let k = 0; k < r.kernels.length; k++) {
          grads[l * per + 2 * k] = tf.reshape(r.kernels[k], [-1]);
          grads[l * per + 2 * k + 1] = r.biases[k];
        }
        if (r.input) g = r.input;
      }
      return { loss, grad: tf.concat(grads) };
    });
  }

  /**
   * Mean NLL of a batch from the couplings' output u and the summed coupling log-dets,
   * and its gradient w.r.t. u; NICE's σ and the mixture's gradients go into their slots of `grads`.
   */
  private baseLoss(u: Tensor, logDet: Tensor | null, weights: FlowWeights, grads: Tensor[]): { loss: Scalar; gU: Tensor } {
    const B = u.shape[0]!;
    const ls = weights.logScale;
    const scale = ls ? tf.exp(ls) : null;
    const z = scale ? tf.mul(u, scale) : u;
    const mix = weights.mixture;
    let total: Tensor;
    let gZ: Tensor;
    if (mix) {
      // −log p(z) = −logsumexp_k c_k. With responsibilities r = softmax_k(c):
      // ∂/∂z = Σ_k r_k (z−μ_k)/σ_k², ∂/∂μ_k = −r_k (z−μ_k)/σ_k², ∂/∂log σ_k = r_k (1 − q_k),
      // ∂/∂logit_k = π_k − r_k, each summed over rows and divided by B.
      const { comp, diff, q, iv } = mixtureTerms(z, mix);
      const lp = tf.logSumExp(comp, 1, true);
      const r = tf.exp(tf.sub(comp, lp));
      const r3 = tf.expandDims(r, 2);
      const w = tf.mul(tf.mul(r3, diff), iv);
      total = tf.neg(tf.sum(lp));
      gZ = tf.div(tf.sum(w, 1), B);
      const n = this.layout.length;
      grads[n - 3] = tf.sub(tf.softmax(mix.logits), tf.div(tf.sum(r, 0), B));
      grads[n - 2] = tf.reshape(tf.div(tf.sum(w, 0), -B), [-1]);
      grads[n - 1] = tf.reshape(tf.div(tf.sum(tf.mul(r3, tf.sub(1, q)), 0), B), [-1]);
    } else {
      total = tf.add(tf.mul(tf.sum(tf.square(z)), 0.5), B * this.spec.dim * HALF_LOG_2PI);
      gZ = tf.div(z, B);
    }
    if (logDet) total = tf.sub(total, tf.sum(logDet));
    if (ls) total = tf.sub(total, tf.mul(tf.sum(ls), B));
    const loss = tf.div(total, B) as Scalar;
    // Through z = u·exp(σ): ∂/∂u = ∂/∂z·exp(σ), ∂/∂σ = Σ_rows z·∂/∂z − 1.
    let gU: Tensor = gZ;
    if (scale) {
      grads[this.layout.length - 1 - (mix ? 3 : 0)] = tf.sub(tf.sum(tf.mul(z, gZ), 0), 1);
      gU = tf.mul(gU, scale);
    }
    return { loss, gU };
  }

  private lossAndGrad2d(weights: FlowWeights, x0: Tensor, swaps: boolean[]): { loss: Scalar; grad: Tensor } {
    return tf.tidy(() => {
      const B = x0.shape[0]!;
      const caches: ColumnCache[] = [];
      let [c0, c1] = tf.split(x0, 2, 1);
      let logDetSum: Tensor | null = null;
      weights.forEach((w, l) => {
        const [a, b] = swaps[l] ? [c1, c0] : [c0, c1];
        const r = inverse2d(a, b, w, this.cfg);
        caches.push(r.cache);
        [c0, c1] = [a, r.y];
        if (r.logDet) logDetSum = logDetSum ? tf.add(logDetSum, r.logDet) : r.logDet;
      });
      const grads: Tensor[] = new Array(this.layout.length);
      const { loss, gU } = this.baseLoss(tf.concat([c0, c1], 1), logDetSum, weights, grads);
      // The [B,2] gradient is split into columns once.
      let [g0, g1] = tf.split(gU, 2, 1);
      const per = 2 * (this.spec.hiddenLayers + 1);
      const ones = tf.ones([1, B]);
      for (let l = weights.length - 1; l >= 0; l--) {
        const r = backward2d(g0, g1, -1 / B, caches[l], weights[l], l > 0, ones);
        for (let k = 0; k < r.kernels.length; k++) {
          grads[l * per + 2 * k] = tf.reshape(r.kernels[k], [-1]);
          grads[l * per + 2 * k + 1] = r.biases[k];
        }
        if (r.a && r.b) [g0, g1] = swaps[l] ? [r.b, r.a] : [r.a, r.b];
      }
      return { loss, grad: tf.concat(grads) };
    });
  }

  /** Mean NLL in standardised space, without gradient (for validation). */
  meanNll(weights: FlowWeights, x0: Tensor): Scalar {
    return tf.tidy(() => {
      const { z, logDet } = this.toBase(x0, weights);
      return tf.neg(tf.mean(tf.add(this.baseLogProb(z, weights), logDet))) as Scalar;
    });
  }
}

/**
 * Per row and component, log π_k + log N(z; μ_k, σ_k²) as comp [B,K], with the pieces the
 * gradient reuses: diff = z − μ_k [B,K,D], q = diff²/σ_k² [B,K,D], iv = 1/σ_k² [K,D].
 */
function mixtureTerms(z: Tensor, m: MixtureWeights): { comp: Tensor; diff: Tensor; q: Tensor; iv: Tensor } {
  const D = z.shape[1]!;
  const iv = tf.exp(tf.mul(m.logStd, -2));
  const diff = tf.sub(tf.expandDims(z, 1), tf.expandDims(m.means, 0));
  const q = tf.mul(tf.square(diff), iv);
  const logNorm = tf.add(tf.sum(m.logStd, 1), D * HALF_LOG_2PI); // [K]
  const comp = tf.sub(tf.sub(tf.logSoftmax(m.logits), logNorm), tf.mul(tf.sum(q, 2), 0.5));
  return { comp, diff, q, iv };
}

/** Undoes NICE's scaling layer (base → couplings): z·exp(−σ); z itself when there is none. */
function unscale(z: Tensor, weights: FlowWeights): Tensor {
  return weights.logScale ? tf.mul(z, tf.exp(tf.neg(weights.logScale))) : z;
}

/**
 * rnvp's last layer as one-column heads for raw log-scale and shift, from its kernel
 * transposed ([2,H]: row c is output c's column) and its bias [2]: a copy in JS instead
 * of splitting the network's output every step.
 */
function columnHeads(kernelT: Float32Array, bias: Float32Array, forTraining: boolean): CouplingHeads {
  const H = kernelT.length / 2;
  const col = (c: number, shape: [number, number]): Tensor => tf.tensor(kernelT.subarray(c * H, (c + 1) * H), shape, 'float32');
  return {
    kernels: [col(0, [H, 1]), col(1, [H, 1])],
    ...(forTraining ? { kernelsT: [col(0, [1, H]), col(1, [1, H])] as [Tensor, Tensor] } : {}),
    biases: [tf.tensor(bias.subarray(0, 1), [1], 'float32'), tf.tensor(bias.subarray(1, 2), [1], 'float32')],
  };
}

export function disposeWeights(weights: FlowWeights): void {
  for (const w of weights) {
    for (const t of [...w.kernels, ...w.biases, ...(w.kernelsT ?? [])]) t.dispose();
    if (w.heads) for (const t of [...w.heads.kernels, ...w.heads.biases, ...(w.heads.kernelsT ?? [])]) t.dispose();
  }
  weights.logScale?.dispose();
  if (weights.mixture) for (const t of Object.values(weights.mixture)) t.dispose();
}

/** Row-major [rows, cols] → [cols, rows]. */
function transpose(values: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c];
  return out;
}
