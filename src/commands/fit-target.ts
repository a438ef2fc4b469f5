/**
 * `nf fit --target module.mjs`: reverse-KL fit to a user-supplied unnormalised density.
 * The result is an ordinary checkpoint: sample, logprob and eval work on it unchanged.
 */
import { saveCheckpoint, type ModelMeta, type TrainingSummary } from '../checkpoint.js';
import { signalExitCode } from '../errors.js';
import { writeStdout } from '../data/csv-writer.js';
import { registerAllGradients, requestedBackend, startEngine } from '../engine.js';
import { Flow } from '../flow/flow.js';
import { buildSpec, initParams, targetArchitecture } from '../flow/spec.js';
import { Rng, freshSeed } from '../rng.js';
import { loadTarget } from '../target.js';
import { formatDuration, note, noteAlways, startProgress, warn } from '../terminal.js';
import { trainReverseKl } from '../train/reverse-kl.js';
import type { FitOptions } from './fit.js';

export const DEFAULT_TARGET_STEPS = 2000;
const LOW_ESS = 0.1;

export async function fitTarget(opts: FitOptions & { target: string; steps?: number }): Promise<number> {
  const started = Date.now();
  const engine = await startEngine(requestedBackend(opts.backend));
  registerAllGradients();
  const target = await loadTarget(opts.target);
  const seed = opts.seed ?? freshSeed();
  const rng = new Rng(seed);
  const D = target.dim;
  // Reverse-KL fits keep 1e-3: their tests and examples were tuned with it.
  const lr = opts.lr ?? 1e-3;
  const spec = buildSpec(opts.flow, D, opts, targetArchitecture(D), rng);
  // No data, so no standardisation: the flow itself learns location and scale.
  const standardization = { mean: new Array<number>(D).fill(0), std: new Array<number>(D).fill(1) };
  const flow = new Flow(spec, standardization);
  const steps = opts.steps ?? DEFAULT_TARGET_STEPS;
  const batchSize = opts.batchSize ?? 256;
  let stop: NodeJS.Signals | null = null;
  const onSignal = (sig: NodeJS.Signals): void => {
    stop = sig;
    noteAlways(`${sig}: stopping after the current step to save the flow so far (press again to abort without saving)`);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const progress = await startProgress(`reverse-KL fit to ${opts.target} (${engine.backend})`);
  let result;
  try {
    result = await trainReverseKl(
      flow,
      initParams(spec, rng),
      target,
      { steps, batchSize, lr, clipNorm: 5, warmupSteps: 100, seed, evalSamples: 20000 },
      {
        shouldStop: () => stop !== null,
        onRecover: (m) => progress.log(`warning: ${m}`),
        onProgress: (step, total, loss, ms) =>
          progress.update(`step ${step}/${total}  reverse KL loss ${loss.toFixed(4)}  ${formatDuration(ms)} elapsed, ~${formatDuration((ms / step) * (total - step))} left`),
      },
    );
  } finally {
    progress.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  const seconds = (Date.now() - started) / 1000;
  const training: TrainingSummary & Record<string, unknown> = {
    kind: 'reverse-kl',
    target: opts.target,
    steps: result.steps,
    finalLoss: result.finalLoss,
    logZ: result.logZ,
    logZStderr: result.logZStderr,
    essFraction: result.essFraction,
    epochs: 0,
    bestEpoch: 0,
    bestValNll: Number.NaN,
    trainRows: 0,
    valRows: 0,
    droppedRows: 0,
    backend: engine.backend,
    seconds: Math.round(seconds * 100) / 100,
    samplesPerSecond: Math.round(result.samplesPerSecond),
    stopReason: stop ? `interrupted (${stop})` : 'steps',
    seed,
    batchSize,
    lr,
    patience: 0,
    valSplit: 0,
    dequantize: false,
    source: opts.target,
    createdAt: new Date().toISOString(),
    history: result.history.map((h) => ({ epoch: h.step, trainNll: h.loss, valNll: Number.NaN })),
  };
  const meta: Omit<ModelMeta, 'weightsManifest' | 'format' | 'version'> = { flow: spec, columns: target.columns, standardization, training };
  await saveCheckpoint(opts.model, meta, result.params);
  flow.dispose();
  const summary = {
    model: opts.model,
    backend: engine.backend,
    flow: spec.type,
    layers: spec.layers,
    hidden: spec.hidden,
    dim: D,
    columns: target.columns,
    target: opts.target,
    steps: result.steps,
    finalLoss: result.finalLoss,
    logZ: result.logZ,
    logZStderr: result.logZStderr,
    essFraction: result.essFraction,
    importanceSamples: result.samples,
    seconds: training.seconds,
    samplesPerSecond: training.samplesPerSecond,
    seed,
  };
  if (opts.json) await writeStdout(JSON.stringify(summary) + '\n');
  const saved =
    `saved ${opts.model}: ${spec.type} ${spec.layers}×${spec.hidden} fitted to ${opts.target} by reverse KL, ${result.steps} steps${stop ? ` (${stop}: stopped early)` : ''}; ` +
    `log Z ≈ ${result.logZ.toFixed(4)} ± ${result.logZStderr.toFixed(4)}, ESS ${(100 * result.essFraction).toFixed(1)}% of ${result.samples}; ` +
    `${formatDuration(seconds * 1000)} on ${engine.backend}`;
  if (stop) noteAlways(saved);
  else note(saved);
  if (!(result.essFraction >= LOW_ESS)) {
    await warn(
      `effective sample size is only ${(100 * result.essFraction).toFixed(1)}%: the flow probably misses part of the target (mode collapse, the known failure of reverse KL); ` +
        'the log Z estimate is then biased low — try more --layers/--hidden, more --steps, or a different --seed',
    );
  }
  return stop ? signalExitCode(stop) : 0;
}
