/**
 * Reverse-KL training: fit a flow q to a density p* known up to a constant, from base
 * samples only. Minimises E_{z~N(0,I)}[log q(f(z)) − log p*(f(z))] by stochastic gradients.
 * Uses TensorFlow.js autodiff (gradients must flow through the user's logProb), then the
 * same JS-side Adam and clipping as data fits.
 *
 * Quality is reported by importance sampling: w = p*(x)/q(x) for x ~ q gives
 * log Z ≈ log mean(w), its standard error, and the effective sample size (Σw)²/Σw².
 */
import { UserError } from '../errors.js';
import type { Flow, FlowWeights } from '../flow/flow.js';
import { disposeWeights } from '../flow/flow.js';
import { Rng } from '../rng.js';
import { evalTarget, type Target } from '../target.js';
import { tf, type Tensor } from '../tf.js';
import { Adam, globalNorm } from './adam.js';
import { yieldToLoop } from './trainer.js';

export interface ReverseKlConfig {
  steps: number;
  batchSize: number;
  lr: number;
  clipNorm: number;
  warmupSteps: number;
  seed: number;
  /** Draws for the final importance-sampling estimate. */
  evalSamples: number;
}

export interface ImportanceEstimate {
  logZ: number;
  logZStderr: number;
  essFraction: number;
  samples: number;
}

export interface ReverseKlResult extends ImportanceEstimate {
  params: Float32Array;
  steps: number;
  /** Mean reverse-KL loss (= KL(q||p*) − log Z) over the last 100 steps. */
  finalLoss: number;
  history: { step: number; loss: number }[];
  samplesPerSecond: number;
  interrupted: boolean;
}

export interface ReverseKlHooks {
  onProgress?: (step: number, steps: number, loss: number, elapsedMs: number) => void;
  onRecover?: (message: string) => void;
  shouldStop?: () => boolean;
}

/** log q(x) and log p*(x) for x = f(z), per row. */
function logWeights(flow: Flow, weights: FlowWeights, target: Target, z: Tensor): { logQ: Tensor; logP: Tensor } {
  const { x, logDet } = flow.fromBaseWithLogDet(z, weights);
  return { logQ: tf.sub(flow.baseLogProb(z, weights), logDet), logP: evalTarget(target, x, tf) };
}

/** Every weight tensor in parameter-layout order (couplings, then NICE's log-scales). */
function weightList(weights: FlowWeights): Tensor[] {
  const list = weights.flatMap((w) => w.kernels.flatMap((k, i) => [k, w.biases[i]]));
  return weights.logScale ? [...list, weights.logScale] : list;
}

function withWeights(template: FlowWeights, flat: Tensor[], matrices: ReturnType<Flow['permutationMatrices']>): FlowWeights {
  let i = 0;
  const out: FlowWeights = template.map((w, l) => {
    const kernels: Tensor[] = [];
    const biases: Tensor[] = [];
    for (let k = 0; k < w.kernels.length; k++) {
      kernels.push(flat[i++]);
      biases.push(flat[i++]);
    }
    return { kernels, biases, perm: w.perm, invPerm: w.invPerm, ...matrices[l] };
  });
  if (template.logScale) out.logScale = flat[i];
  return out;
}

export async function trainReverseKl(
  flow: Flow,
  init: Float32Array,
  target: Target,
  cfg: ReverseKlConfig,
  hooks: ReverseKlHooks = {},
): Promise<ReverseKlResult> {
  const D = flow.spec.dim;
  const rng = new Rng(cfg.seed ^ 0x2545f491);
  const params = Float32Array.from(init);
  const lastGood = Float32Array.from(init);
  const adam = new Adam(params);
  const history: ReverseKlResult['history'] = [];
  const recent: number[] = [];
  let lrScale = 1;
  let recoveries = 0;
  let interrupted = false;
  let step = 0;
  const started = performance.now();
  let lastYield = Date.now();
  const matrices = flow.permutationMatrices();
  for (; step < cfg.steps; step++) {
    if (hooks.shouldStop?.()) {
      interrupted = true;
      break;
    }
    const zValues = rng.normals(cfg.batchSize * D);
    const packed = tf.tidy(() => {
      const weights = flow.makeWeights(params);
      const z = tf.tensor2d(zValues, [cfg.batchSize, D]);
      const { value, grads } = tf.valueAndGrads((...flat: Tensor[]) => {
        const { logQ, logP } = logWeights(flow, withWeights(weights, flat, matrices), target, z);
        return tf.mean(tf.sub(logQ, logP));
      })(weightList(weights));
      return tf.concat([tf.reshape(value, [1]), ...grads.map((g) => tf.reshape(g, [-1]))]);
    });
    const values = packed.dataSync() as Float32Array;
    packed.dispose();
    const loss = values[0];
    const grad = values.subarray(1);
    const norm = globalNorm(grad);
    if (!Number.isFinite(loss) || !Number.isFinite(norm)) {
      recoveries += 1;
      if (recoveries > 4) {
        throw new UserError('reverse-KL training diverged: the loss became non-finite repeatedly (check that logProb is finite where the flow puts mass, or lower --lr)');
      }
      lrScale *= 0.5;
      params.set(lastGood);
      adam.reset();
      hooks.onRecover?.(`non-finite loss at step ${step + 1}: restored the last good weights, learning rate now ${(cfg.lr * lrScale).toPrecision(3)}`);
      continue;
    }
    lastGood.set(params);
    const warm = cfg.warmupSteps > 0 ? Math.min(1, (step + 1) / cfg.warmupSteps) : 1;
    // Cosine decay to 5% over the run: fresh samples every step, so no early stopping is needed.
    const decay = 0.05 + 0.95 * 0.5 * (1 + Math.cos((Math.PI * step) / cfg.steps));
    adam.step(grad, cfg.lr * lrScale * warm * decay, norm > cfg.clipNorm ? cfg.clipNorm / norm : 1);
    recent.push(loss);
    if (recent.length > 100) recent.shift();
    if ((step + 1) % 50 === 0 || step === 0) {
      const avg = recent.reduce((a, b) => a + b, 0) / recent.length;
      history.push({ step: step + 1, loss: avg });
      hooks.onProgress?.(step + 1, cfg.steps, avg, performance.now() - started);
    }
    if (Date.now() - lastYield > 100) {
      await yieldToLoop();
      lastYield = Date.now();
    }
  }
  for (const m of matrices) tf.dispose([m.permMatrix, m.invPermMatrix].filter((t): t is Tensor => t !== null));
  const seconds = (performance.now() - started) / 1000;
  const est = importanceEstimate(flow, params, target, cfg.evalSamples, rng);
  return {
    params,
    steps: step,
    finalLoss: recent.length ? recent.reduce((a, b) => a + b, 0) / recent.length : Number.NaN,
    history,
    samplesPerSecond: seconds > 0 ? (step * cfg.batchSize) / seconds : 0,
    interrupted,
    ...est,
  };
}

/** Importance-sampling estimate of log Z with q as the proposal. */
export function importanceEstimate(flow: Flow, params: Float32Array, target: Target, samples: number, rng: Rng): ImportanceEstimate {
  const D = flow.spec.dim;
  const chunk = 4096;
  const logW = new Float64Array(samples);
  const weights = flow.makeWeights(params);
  try {
    for (let done = 0; done < samples; done += chunk) {
      const n = Math.min(chunk, samples - done);
      const z = rng.normals(n * D);
      const lw = tf.tidy(() => {
        const { logQ, logP } = logWeights(flow, weights, target, tf.tensor2d(z, [n, D]));
        return tf.sub(logP, logQ);
      });
      logW.set(lw.dataSync(), done);
      lw.dispose();
    }
  } finally {
    disposeWeights(weights);
  }
  let max = -Infinity;
  for (const v of logW) if (v > max) max = v;
  if (!Number.isFinite(max)) return { logZ: Number.NaN, logZStderr: Number.NaN, essFraction: 0, samples };
  let s1 = 0;
  let s2 = 0;
  for (const v of logW) {
    const w = Math.exp(v - max);
    s1 += w;
    s2 += w * w;
  }
  const ess = (s1 * s1) / s2;
  return {
    logZ: max + Math.log(s1 / samples),
    // Delta method: Var(log mean w) ≈ Var(w) / (N mean(w)²) = (N/ESS − 1) / N.
    logZStderr: Math.sqrt(Math.max(0, samples / ess - 1) / samples),
    essFraction: ess / samples,
    samples,
  };
}
