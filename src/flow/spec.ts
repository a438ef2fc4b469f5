/**
 * The flow's architecture as plain data: what a checkpoint stores and what the math needs.
 * No tensors here.
 *
 * Direction convention (used everywhere in nf): `forward` maps base → data (sampling),
 * `inverse` maps data → base (density evaluation and training). Log-determinants are
 * always reported for the direction being computed.
 */
import { Rng } from '../rng.js';

export const FLOW_TYPES = ['rnvp', 'nice'] as const;
export type FlowType = (typeof FLOW_TYPES)[number];

export interface FlowSpec {
  type: FlowType;
  /** Data dimension D. */
  dim: number;
  /** Number of coupling layers. */
  layers: number;
  /** Units per hidden layer of each coupling network. */
  hidden: number;
  /** Hidden layers per coupling network. */
  hiddenLayers: number;
  /** Bound c of the log-scale: s = c · tanh(raw / c). rnvp only. */
  scaleBound: number;
  /**
   * Per coupling layer, the permutation applied to its input in the inverse (data → base)
   * direction: v[:, j] = u[:, perm[j]]. The first floor(D/2) coordinates of v condition,
   * the rest are transformed.
   */
  permutations: number[][];
  /**
   * A learned per-coordinate log-scale σ applied after the last coupling (data → base:
   * z = u·exp(σ)), as in NICE's top "scaling layer". Without it an additive-coupling flow
   * preserves volume and cannot put more density on the data than the base's peak.
   * Absent (false) in checkpoints written before it existed.
   */
  diagScale?: boolean;
  /**
   * Components K of a learned diagonal Gaussian mixture used as the base density instead of
   * the standard normal. Absent in checkpoints without one.
   */
  mixture?: number;
}

export interface ParamEntry {
  name: string;
  shape: number[];
  size: number;
}

export function splitSizes(dim: number): { cond: number; trans: number } {
  const cond = Math.floor(dim / 2);
  return { cond, trans: dim - cond };
}

/** Width of the coupling network's output: s and t for rnvp, t only for nice. */
export function netOutputs(spec: Pick<FlowSpec, 'type' | 'dim'>): number {
  const { trans } = splitSizes(spec.dim);
  return spec.type === 'rnvp' ? 2 * trans : trans;
}

/** Names and shapes of every weight, in the order they sit in the flat parameter vector. */
export function paramLayout(spec: FlowSpec): ParamEntry[] {
  const { cond } = splitSizes(spec.dim);
  const out: ParamEntry[] = [];
  const push = (name: string, shape: number[]): void => {
    out.push({ name, shape, size: shape.reduce((a, b) => a * b, 1) });
  };
  for (let l = 0; l < spec.layers; l++) {
    let fanIn = cond;
    for (let k = 0; k <= spec.hiddenLayers; k++) {
      const units = k === spec.hiddenLayers ? netOutputs(spec) : spec.hidden;
      push(`coupling${l}/dense${k}/kernel`, [fanIn, units]);
      push(`coupling${l}/dense${k}/bias`, [units]);
      fanIn = units;
    }
  }
  if (spec.diagScale) push('scale/log', [spec.dim]);
  if (spec.mixture) {
    push('base/logits', [spec.mixture]);
    push('base/means', [spec.mixture, spec.dim]);
    push('base/logstd', [spec.mixture, spec.dim]);
  }
  return out;
}

export function paramCount(spec: FlowSpec): number {
  return paramLayout(spec).reduce((a, e) => a + e.size, 0);
}

/**
 * Permutations so that every coordinate is transformed: in 2-D the conditioning
 * coordinate alternates; above 2-D even layers get a fixed random permutation and odd
 * layers reverse, which moves every conditioning coordinate into the transformed half.
 */
export function makePermutations(dim: number, layers: number, rng: Rng): number[][] {
  const identity = Array.from({ length: dim }, (_, i) => i);
  const reverse = identity.slice().reverse();
  const perms: number[][] = [];
  for (let l = 0; l < layers; l++) {
    if (dim <= 2) perms.push(l === 0 ? identity : reverse);
    else if (l % 2 === 1) perms.push(reverse);
    else perms.push(Array.from(rng.permutation(dim)));
  }
  return perms;
}

/**
 * Where each base coordinate comes from when every coupling is the identity: layer l reads
 * u[perm_l] and passes its halves on in that order, so the flow maps x to z = x[result].
 * A base fitted in data coordinates (the EM mixture) is reordered by this.
 */
export function basePermutation(spec: FlowSpec): number[] {
  let q = Array.from({ length: spec.dim }, (_, i) => i);
  for (const p of spec.permutations) q = p.map((i) => q[i]);
  return q;
}

/**
 * Depth and width by dimension and data size. Above 2-D each layer transforms only half
 * the coordinates under a random permutation, and with enough data more layers help
 * (gmm10d, 10-D, 20k rows: test LL −13.45 with 8 layers, −13.41 with 12; truth −13.17).
 * With little data deeper flows extrapolate badly to unseen rows (digits, 64-D, 1.2k rows:
 * seed 0 −114.7 ± 1.2 with 8 layers vs −122.6 ± 6.4 with 12; seed 1 −114.6 vs −114.2).
 * In 2-D with enough data, depth is what separates modes and bends thin structures, and it
 * pays more than width: 16 layers vs 8 gained 0.01–0.05 on every toy set, 32 vs 16 up to
 * 0.03, and 64 layers of 2×32 networks vs 32 of 2×64 (one restart, seed 0) gave rings
 * −2.767 vs −2.900, 8gaussians −2.849 vs −2.858, moons −2.387 vs −2.388 for ~1.3× the time
 * per epoch, while 2×128 networks instead of 2×64 cost twice the time for less. 96
 * couplings instead of 64 (one restart, seed 0) gave rings −2.636 vs −2.658 and
 * checkerboard −3.519 vs −3.539, the others within ±0.005, for ~1.5× the time per epoch.
 */
export const DEEP_MIN_ROWS = 5000;

export interface Architecture {
  layers: number;
  hidden: number;
}

export function defaultArchitecture(dim: number, trainRows: number): Architecture {
  if (trainRows < DEEP_MIN_ROWS) return { layers: 8, hidden: 64 };
  return dim === 2 ? { layers: 96, hidden: 32 } : { layers: 12, hidden: 64 };
}

/** Reverse-KL (--target) fits keep the architecture their tests and examples were tuned with. */
export function targetArchitecture(dim: number): Architecture {
  return { layers: dim === 2 ? 32 : 12, hidden: 64 };
}

/**
 * nf's architecture for `dim` columns: what the user gave, else `defaults`; 2 hidden layers,
 * log-scale bound 2, fixed permutations.
 */
export function buildSpec(type: FlowType, dim: number, given: Partial<Architecture>, defaults: Architecture, rng: Rng): FlowSpec {
  const layers = given.layers ?? defaults.layers;
  const spec: FlowSpec = {
    type,
    dim,
    layers,
    hidden: given.hidden ?? defaults.hidden,
    hiddenLayers: 2,
    scaleBound: 2,
    permutations: makePermutations(dim, layers, rng),
  };
  // NICE as published: additive couplings under a diagonal scaling layer.
  if (type === 'nice') spec.diagScale = true;
  return spec;
}

/**
 * Initial parameters: uniform ±1/sqrt(fan_in) for hidden layers (PyTorch's default),
 * and zero for the last layer of every coupling net so each coupling starts as the identity.
 *
 * `lastLayerScale` > 0 draws the last layers' kernels too, ±scale/sqrt(fan_in) (biases stay zero).
 * Over a base mixture fitted by EM the identity start is a trap: the mixture already fits,
 * the gradient reaching zero last layers is small, and the hidden layers get none through
 * them. On checkerboard (seed 0) the validation NLL stalled at 3.82 for 20 epochs and the
 * fit ended at test −3.644; with random last layers it ended at −3.519.
 */
export function initParams(spec: FlowSpec, rng: Rng, opts: { lastLayerScale?: number } = {}): Float32Array {
  const layout = paramLayout(spec);
  const out = new Float32Array(paramCount(spec));
  let offset = 0;
  for (const e of layout) {
    // Zero last layers (unless lastLayerScale draws their kernels), log-scales and base: the
    // flow starts as the identity.
    const last = e.name.includes(`/dense${spec.hiddenLayers}/`);
    const zero = e.name === 'scale/log' || e.name.startsWith('base/') || (last && !e.name.endsWith('/kernel'));
    const scale = zero ? 0 : last ? (opts.lastLayerScale ?? 0) : 1;
    if (scale !== 0) {
      const fanIn = e.name.endsWith('/kernel') ? e.shape[0] : layout[layout.indexOf(e) - 1].shape[0];
      const bound = scale / Math.sqrt(Math.max(1, fanIn));
      for (let i = 0; i < e.size; i++) out[offset + i] = (2 * rng.uniform() - 1) * bound;
    }
    offset += e.size;
  }
  return out;
}

export function isIdentity(perm: readonly number[]): boolean {
  return perm.every((v, i) => v === i);
}

export function invertPermutation(perm: readonly number[]): number[] {
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => {
    inv[p] = i;
  });
  return inv;
}
