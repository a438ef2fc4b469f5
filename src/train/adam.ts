/**
 * Adam (with optional decoupled weight decay) on a flat Float32Array, in plain JS.
 * The parameter vector is small (≤ a few 100k), so this costs well under a millisecond,
 * far less than the dozens of backend ops a per-tensor optimiser would launch.
 * TensorFlow.js optimisers also lack clip-by-global-norm, which `step` takes as a factor.
 */
export interface AdamConfig {
  beta1: number;
  beta2: number;
  epsilon: number;
  weightDecay: number;
  /** Only parameters before this index decay (default: all). */
  decayEnd?: number;
}

export const DEFAULT_ADAM: AdamConfig = { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 };

export class Adam {
  private readonly m: Float32Array;
  private readonly v: Float32Array;
  private t = 0;

  constructor(
    private readonly params: Float32Array,
    private readonly cfg: AdamConfig = DEFAULT_ADAM,
  ) {
    this.m = new Float32Array(params.length);
    this.v = new Float32Array(params.length);
  }

  /** Forget the moment estimates (after restoring weights when training diverged). */
  reset(): void {
    this.t = 0;
    this.m.fill(0);
    this.v.fill(0);
  }

  /** One update with gradient `grad` multiplied by `gradScale` (the clipping factor). */
  step(grad: Float32Array, lr: number, gradScale = 1): void {
    this.t += 1;
    const { beta1, beta2, epsilon, weightDecay } = this.cfg;
    const c1 = 1 - beta1 ** this.t;
    const c2 = Math.sqrt(1 - beta2 ** this.t);
    const stepSize = (lr * c2) / c1;
    const eps = epsilon * c2; // ε on the bias-corrected v, as in Kingma & Ba
    const decay = 1 - lr * weightDecay;
    const { params, m, v } = this;
    const decayEnd = this.cfg.decayEnd ?? params.length;
    for (let i = 0; i < params.length; i++) {
      const g = grad[i] * gradScale;
      const mi = beta1 * m[i] + (1 - beta1) * g;
      const vi = beta2 * v[i] + (1 - beta2) * g * g;
      m[i] = mi;
      v[i] = vi;
      params[i] = (i < decayEnd ? params[i] * decay : params[i]) - (stepSize * mi) / (Math.sqrt(vi) + eps);
    }
  }
}

/** Euclidean norm, in float64. */
export function globalNorm(values: Float32Array): number {
  let s = 0;
  for (let i = 0; i < values.length; i++) s += values[i] * values[i];
  return Math.sqrt(s);
}
