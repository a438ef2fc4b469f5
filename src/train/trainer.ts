/**
 * Maximum-likelihood training: shuffled minibatches, Adam with warm-up, global-norm
 * clipping, early stopping on validation NLL with the best weights kept, and recovery
 * from non-finite losses. Knows nothing of files or terminals: it reports through
 * callbacks and returns plain numbers.
 */
import { Rng } from '../rng.js';
import { tf, type Tensor } from '../tf.js';
import { UserError } from '../errors.js';
import { disposeWeights, type Flow } from '../flow/flow.js';
import { mixtureSize } from '../flow/mixture.js';
import { Adam, globalNorm } from './adam.js';
import type { BackendName } from '../engine.js';
import { LocalGradients, ParallelGradients, type GradientComputer } from './gradients.js';

export interface TrainConfig {
  epochs: number;
  batchSize: number;
  lr: number;
  patience: number;
  clipNorm: number;
  warmupSteps: number;
  /** Halve the learning rate after this many epochs without improvement (0: never). */
  plateauEpochs: number;
  weightDecay: number;
  /**
   * Decay of an exponential moving average of the weights, which is what validation
   * scores and what is kept (0 or absent: the raw weights).
   */
  emaDecay?: number;
  seed: number;
  /** Threads computing each batch (1: this thread only). Needs `backend` for the workers. */
  threads: number;
  backend: BackendName;
}

export interface EpochReport {
  epoch: number;
  epochs: number;
  /** Mean NLL per row in original units (nats). */
  trainNll: number;
  valNll: number;
  bestValNll: number;
  bestEpoch: number;
  elapsedMs: number;
  lr: number;
}

export type StopReason = 'patience' | 'epochs' | 'interrupted';

export interface TrainResult {
  params: Float32Array;
  epochsRun: number;
  bestEpoch: number;
  /** Best validation NLL, original units (NaN if no epoch finished). */
  bestValNll: number;
  history: { epoch: number; trainNll: number; valNll: number }[];
  stopReason: StopReason;
  recoveries: number;
  samplesPerSecond: number;
  /** The fallback validated better than every epoch: `params` are the fallback's, bestEpoch 0. */
  fellBack: boolean;
}

export interface TrainHooks {
  onEpoch?: (r: EpochReport) => void;
  onRecover?: (message: string) => void;
  /** Polled between steps: return true to stop (e.g. after SIGINT). */
  shouldStop?: () => boolean;
}

const MAX_RECOVERIES = 4;
/**
 * Epochs, in units of patience, a flow gets to beat the fallback unconditionally. After
 * that it continues only while its last `patience` epochs gained more than the gap still
 * left. On the 2-D sets (seed 0, 64 and 96 couplings) flows that beat their mixture did so
 * by epoch 40, but pinwheel at seed 1 was still 0.042 short at epoch 60, having gained
 * 0.045 in the 20 epochs before; 8gaussians at 96 couplings trained 152 epochs without
 * beating its mixture (at epoch 60: 0.035 short, 0.006 gained).
 */
const FALLBACK_GRACE = 3;
const EVAL_CHUNK = 8192;

/** Yield to the event loop so signal handlers and spinners get to run. */
export const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function meanNll(flow: Flow, params: Float32Array, data: Tensor, rows: number): number {
  const weights = flow.makeWeights(params);
  let sum = 0;
  try {
    for (let start = 0; start < rows; start += EVAL_CHUNK) {
      const n = Math.min(EVAL_CHUNK, rows - start);
      const v = tf.tidy(() => flow.meanNll(weights, tf.slice(data, [start, 0], [n, -1])));
      sum += v.dataSync()[0] * n;
      v.dispose();
    }
  } finally {
    disposeWeights(weights);
  }
  return sum / rows;
}

/** Log density (original units) of each standardised row, in chunks. */
export function rowLogProbs(flow: Flow, params: Float32Array, rows: Float32Array): Float32Array {
  const D = flow.spec.dim;
  const n = rows.length / D;
  const out = new Float32Array(n);
  const weights = flow.makeWeights(params);
  try {
    for (let start = 0; start < n; start += EVAL_CHUNK) {
      const m = Math.min(EVAL_CHUNK, n - start);
      const lp = tf.tidy(() => flow.logProbStandardized(weights, tf.tensor2d(rows.subarray(start * D, (start + m) * D), [m, D])));
      out.set(lp.dataSync(), start);
      lp.dispose();
    }
  } finally {
    disposeWeights(weights);
  }
  return out;
}

/**
 * Trains `flow` from `init` on standardised rows (`train`, `val`: row-major, dim columns).
 * Returns the best parameters by validation NLL. A `fallback` (e.g. the identity couplings
 * over the EM mixture, when the flow starts elsewhere) is returned if no epoch beat it. It
 * does not count for patience, which would otherwise stop a random start before it has
 * caught up with a fitted mixture; but after FALLBACK_GRACE × patience epochs a flow still
 * behind it stops once it is no longer closing the gap fast enough for further epochs to
 * be kept.
 */
export async function train(
  flow: Flow,
  init: Float32Array,
  trainRows: Float32Array,
  valRows: Float32Array,
  cfg: TrainConfig,
  hooks: TrainHooks = {},
  fallback?: Float32Array,
): Promise<TrainResult> {
  const D = flow.spec.dim;
  const nTrain = trainRows.length / D;
  const nVal = valRows.length / D;
  const rng = new Rng(cfg.seed ^ 0x5bd1e995);
  const trainT = tf.tensor2d(trainRows, [nTrain, D]);
  const valT = tf.tensor2d(valRows, [nVal, D]);
  // Shared memory so gradient workers read the current parameters without copies.
  const params = new Float32Array(new SharedArrayBuffer(init.length * 4));
  params.set(init);
  // The mixture base's parameters are not decayed: shrinking means and log-stds toward 0 is no prior on them.
  const decayEnd = init.length - mixtureSize(D, flow.spec.mixture ?? 0);
  const adam = new Adam(params, { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: cfg.weightDecay, decayEnd });
  const best = Float32Array.from(init);
  const emaDecay = cfg.emaDecay ?? 0;
  // Averaging damps the step-to-step jitter of Adam's iterates around the optimum.
  const ema = emaDecay > 0 ? Float32Array.from(init) : null;
  let emaSteps = 0;
  const offset = flow.logStdSum; // standardised NLL + Σ log std = original-units NLL
  const initial = meanNll(flow, params, valT, nVal);
  const fallbackVal = fallback ? meanNll(flow, fallback, valT, nVal) : Number.POSITIVE_INFINITY;
  // A start that overflows (deep flows can scale by up to e^(2·layers)) scores NaN, and
  // nothing compares below NaN: count it as +∞ so the first finite epoch is kept.
  let bestVal = Number.isFinite(initial) ? initial : Number.POSITIVE_INFINITY;
  // bestByEpoch[e]: the best validation NLL after epoch e (e = 0: the initial weights).
  const bestByEpoch = [bestVal];
  let bestEpoch = 0;
  let lrScale = 1;
  let lastDecay = 0;
  let recoveries = 0;
  let step = 0;
  let stopReason: StopReason = 'epochs';
  let epochsRun = 0;
  let trainSamples = 0;
  let trainMs = 0;
  const history: TrainResult['history'] = [];
  const started = Date.now();
  const order = new Int32Array(nTrain);
  const batchSize = Math.min(cfg.batchSize, nTrain);
  // Splitting a batch only pays when each share is still a sizeable matrix product.
  const threads = batchSize >= 128 * cfg.threads ? cfg.threads : Math.max(1, Math.floor(batchSize / 128));
  let gradients: GradientComputer = new LocalGradients(flow, trainT);
  if (threads > 1) {
    try {
      gradients = await ParallelGradients.start(flow, trainT, trainRows, params, cfg.backend, threads - 1);
    } catch (err) {
      hooks.onRecover?.(`could not start ${threads - 1} training worker(s), using one thread: ${(err as Error).message}`);
    }
  }

  try {
    outer: for (let epoch = 1; epoch <= cfg.epochs; epoch++) {
      rng.permutation(nTrain, order);
      let sum = 0;
      let count = 0;
      let lastYield = Date.now();
      const t0 = performance.now();
      for (let start = 0; start < nTrain; start += batchSize) {
        if (hooks.shouldStop?.()) {
          stopReason = 'interrupted';
          break outer;
        }
        const idx = order.subarray(start, Math.min(start + batchSize, nTrain));
        const B = idx.length;
        const { loss: lossValue, grad } = await gradients.compute(params, idx);
        const gradNorm = globalNorm(grad);
        step += 1;
        if (!Number.isFinite(lossValue) || !Number.isFinite(gradNorm)) {
          recoveries += 1;
          if (recoveries > MAX_RECOVERIES) {
            throw new UserError(
              `training diverged: the loss became non-finite ${recoveries} times even after lowering the learning rate (try a smaller --lr)`,
            );
          }
          lrScale *= 0.5;
          params.set(best);
          ema?.set(best);
          emaSteps = 0;
          adam.reset();
          hooks.onRecover?.(
            `non-finite loss at epoch ${epoch}: restored the best weights and lowered the learning rate to ${(cfg.lr * lrScale).toPrecision(3)}`,
          );
          continue;
        }
        const warm = cfg.warmupSteps > 0 ? Math.min(1, step / cfg.warmupSteps) : 1;
        const lr = cfg.lr * lrScale * warm;
        const clip = gradNorm > cfg.clipNorm ? cfg.clipNorm / gradNorm : 1;
        adam.step(grad, lr, clip);
        if (ema) {
          // Short memory at first, so the average is not anchored to the initial weights.
          emaSteps += 1;
          const d = Math.min(emaDecay, (1 + emaSteps) / (10 + emaSteps));
          for (let i = 0; i < ema.length; i++) ema[i] += (1 - d) * (params[i] - ema[i]);
        }
        sum += lossValue * B;
        count += B;
        if (Date.now() - lastYield > 100) {
          await yieldToLoop();
          lastYield = Date.now();
        }
      }
      trainMs += performance.now() - t0;
      trainSamples += count;
      const scored = ema ?? params;
      const val = meanNll(flow, scored, valT, nVal);
      const trainNll = count > 0 ? sum / count + offset : Number.NaN;
      epochsRun = epoch;
      history.push({ epoch, trainNll, valNll: val + offset });
      if (Number.isFinite(val) && val < bestVal) {
        bestVal = val;
        bestEpoch = epoch;
        best.set(scored);
      }
      hooks.onEpoch?.({
        epoch,
        epochs: cfg.epochs,
        trainNll,
        valNll: val + offset,
        bestValNll: bestVal + offset,
        bestEpoch,
        elapsedMs: Date.now() - started,
        lr: cfg.lr * lrScale,
      });
      bestByEpoch.push(bestVal);
      const behind = bestVal - fallbackVal;
      const closing = bestByEpoch[Math.max(0, epoch - cfg.patience)] - bestVal;
      if (epoch - bestEpoch >= cfg.patience || (epoch >= FALLBACK_GRACE * cfg.patience && behind >= 0 && closing < behind)) {
        stopReason = 'patience';
        break;
      }
      // Reduce on plateau: a lower step size lets Adam settle into the optimum it circles.
      if (cfg.plateauEpochs > 0 && epoch - Math.max(bestEpoch, lastDecay) >= cfg.plateauEpochs && lrScale > 1 / 64) {
        lrScale *= 0.5;
        lastDecay = epoch;
      }
      await yieldToLoop();
    }
    let fellBack = false;
    if (fallback && epochsRun > 0) {
      if (fallbackVal < bestVal) {
        best.set(fallback);
        bestVal = fallbackVal;
        bestEpoch = 0;
        fellBack = true;
      }
    }
    return {
      params: best,
      epochsRun,
      bestEpoch,
      fellBack,
      bestValNll: epochsRun > 0 ? bestVal + offset : Number.NaN,
      history,
      stopReason,
      recoveries,
      samplesPerSecond: trainMs > 0 ? (trainSamples / trainMs) * 1000 : 0,
    };
  } finally {
    await gradients.close();
    trainT.dispose();
    valT.dispose();
  }
}
