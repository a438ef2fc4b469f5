/**
 * `nf fit`: CSV rows → trained flow → checkpoint.
 */
import { checkCheckpointTarget, saveCheckpoint, type ModelMeta, type TrainingSummary } from '../checkpoint.js';
import { signalExitCode, UserError } from '../errors.js';
import { writeStdout } from '../data/csv-writer.js';
import { openSource, checkReadable, readTable } from '../data/csv-reader.js';
import { requestedBackend, startEngine } from '../engine.js';
import { Flow } from '../flow/flow.js';
import { chooseMixture, fitMixture, permuteMixture, refineMixture, ROWS_PER_PARAMETER, setMixture, supportedComponents, type MixtureParams } from '../flow/mixture.js';
import { basePermutation, buildSpec, defaultArchitecture, initParams, type FlowType } from '../flow/spec.js';
import { prepareData, type Prepared } from '../train/prepare.js';
import { Rng, freshSeed } from '../rng.js';
import { formatDuration, note, noteAlways, startProgress, warn } from '../terminal.js';
import { rowLogProbs, yieldToLoop, type EpochReport } from '../train/trainer.js';
import { trainRestarts, type Restart, type RestartsResult } from '../train/restarts.js';
import { quantiles } from '../rarity.js';
import { defaultThreads } from '../train/gradients.js';
import { availableParallelism } from 'node:os';

export interface FitOptions {
  model: string;
  backend?: string;
  quiet?: boolean;
  json?: boolean;
  seed?: number;
  header: boolean;
  columns?: string[];
  flow: FlowType;
  /** Coupling layers; default depends on the dimension and data size (defaultArchitecture). */
  layers?: number;
  /** Reverse-KL fit to this target module instead of data. */
  target?: string;
  steps?: number;
  /** Units per hidden layer; default depends on the dimension and data size. */
  hidden?: number;
  epochs: number;
  batchSize?: number;
  /** Adam learning rate; default DEFAULT_LR (data) or 1e-3 (--target). */
  lr?: number;
  valSplit: number;
  patience: number;
  /** Independent initialisations; the best on validation is kept. */
  restarts: number;
  /** Components of the mixture base; 0 = standard normal; default chosen on validation. */
  components?: number;
  dropInvalid?: boolean;
  dequantize?: boolean;
}

type Phase = 'prepare' | 'train' | 'save';

/**
 * SIGINT / SIGTERM during `fit`. Before training: stop at once (nothing has been written).
 * During training: the first signal stops after the current step (the caller then saves
 * the best weights if an epoch finished), a second one exits at once. While the checkpoint
 * is being written, signals wait until it is complete, so it is never left half-swapped.
 * These lines are printed even with -q: they say what happened to the user's model.
 */
function watchSignals(model: string): { stopped: () => NodeJS.Signals | null; enter: (p: Phase) => void; release: () => void } {
  let phase: Phase = 'prepare';
  let got: NodeJS.Signals | null = null;
  const handler = (sig: NodeJS.Signals): void => {
    if (phase === 'prepare') {
      noteAlways(`${sig} before training started: nothing saved; any previous checkpoint at ${model} is unchanged`);
      process.exit(signalExitCode(sig));
    }
    if (phase === 'save') {
      if (!got) noteAlways(`${sig}: finishing writing the checkpoint first`);
      got ??= sig;
      return;
    }
    if (got) {
      noteAlways(`${sig} again, stopping now: nothing saved; any previous checkpoint at ${model} is unchanged`);
      process.exit(signalExitCode(sig));
    }
    got = sig;
    noteAlways(`${sig}: stopping after the current step to save the best weights so far (press again to abort without saving)`);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    stopped: () => got,
    enter: (p) => {
      phase = p;
    },
    release: () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
      // After a signal, another one while nf winds down just ends it with the same status.
      const first = got;
      if (first) {
        const late = (): void => process.exit(signalExitCode(first));
        process.on('SIGINT', late);
        process.on('SIGTERM', late);
      }
    },
  };
}

/**
 * Data fits: 2e-3 beat 1e-3 at seed 0 on 8gaussians (-2.861 vs -2.868) and checkerboard
 * (-3.534 vs -3.591), and in the full quality benchmark (see README).
 */
export const DEFAULT_LR = 2e-3;

/**
 * The weights scored and kept are an exponential moving average of Adam's iterates. Single
 * fits at seed 0 (25k rows, lr 2e-3): moons test LL -2.392 -> -2.388, 8gaussians -2.861 ->
 * -2.858, pinwheel -2.338 -> -2.339, digits -114.15 -> -113.92, diabetes -27.60 -> -27.63
 * (67 test rows), and the 25k-row fits stop 20-30 epochs sooner.
 */
export const EMA_DECAY = 0.999;

/**
 * Decoupled (AdamW) weight decay: each step multiplies the weights by 1 − lr·decay, a mild
 * pull towards the identity flow that the networks start from. Single fits at seed 0, one
 * restart, against none: rings test LL -2.767 -> -2.743, checkerboard -3.514 -> -3.509,
 * pinwheel -2.335 -> -2.331, 8gaussians -2.849 -> -2.848, moons -2.387 -> -2.386,
 * banana2d unchanged.
 */
export const WEIGHT_DECAY = 0.01;

/**
 * Restarts over a mixture base start with random last layers (scaled by this), not as the
 * identity, which over an EM-fitted mixture is a trap (see initParams). Single fits at seed 0,
 * test LL with scale 0 / 0.5 / 1: checkerboard −3.644 / −3.531 / −3.519, rings −2.664 /
 * −2.672 / −2.645, 8gaussians −2.823 / −2.825 / −2.829. Over the standard normal, zero last
 * layers stay: checkerboard −3.509 against −3.521 with 1.
 *
 * Restarts alternate between two scales, so that one draw's failure mode is hedged by a
 * different one: at 96 couplings, each log-scale bounded by ±2, scale 1 starts far from the
 * identity (initial training NLL near 1e15 on pinwheel), and at seed 1 pinwheel's scale-1 restarts never beat
 * the mixture alone (validation −2.373, test −2.369) while scale 0.3 reached −2.325 (test
 * −2.331). Scale 1 stays first: on rings at seed 0 it validated at −2.650 against −2.677.
 */
export const MIXTURE_LAST_LAYER_SCALES = [1, 0.3] as const;

/** Validation rows needed before a stalled validation NLL is trusted to mean a plateau. */
const PLATEAU_MIN_VAL_ROWS = 2000;

/** Restarts that may train in worker threads: one per free core on the one-core backends. */
function restartWorkers(backend: string, restarts: number): number {
  if (backend === 'tensorflow') return 0; // native TensorFlow already uses every core
  const env = Number(process.env.NF_THREADS);
  const cores = Number.isInteger(env) && env >= 1 ? env : availableParallelism();
  return Math.max(0, Math.min(restarts - 1, cores - 1));
}

/** One progress line for all restarts: each one's epoch and best validation NLL. */
function progressLine(latest: (EpochReport | undefined)[], restarts: number, workers: number): string {
  const reports = latest.filter((r): r is EpochReport => r !== undefined);
  const elapsed = Math.max(...reports.map((r) => r.elapsedMs));
  if (restarts === 1) {
    const r = reports[0];
    const eta = (r.elapsedMs / r.epoch) * (r.epochs - r.epoch);
    return (
      `epoch ${r.epoch}/${r.epochs}  train NLL ${r.trainNll.toFixed(4)}  val NLL ${r.valNll.toFixed(4)}  best ${r.bestValNll.toFixed(4)} @${r.bestEpoch}  ` +
      `${formatDuration(r.elapsedMs)} elapsed, ≤${formatDuration(eta)} left`
    );
  }
  const epochs = latest.map((r) => (r ? `${r.epoch}/${r.epochs}` : '–')).join(' · ');
  const bests = latest.map((r) => (r ? r.bestValNll.toFixed(4) : '–')).join(' · ');
  // Upper bound: every running restart to its epoch cap, then the queued ones one after another.
  const perEpoch = Math.max(...reports.map((r) => r.elapsedMs / r.epoch));
  const running = Math.max(...reports.map((r) => (r.elapsedMs / r.epoch) * (r.epochs - r.epoch)));
  const queued = workers === 0 ? restarts - reports.length : 0;
  const eta = running + queued * perEpoch * reports[0].epochs;
  return `${restarts} restarts: epoch ${epochs}  best val NLL ${bests}  ${formatDuration(elapsed)} elapsed, ≤${formatDuration(eta)} left`;
}

/**
 * The base density's starting point: a diagonal Gaussian mixture fitted to the training
 * rows (K chosen on validation unless given, then refined on more rows), or null for a
 * standard normal base, which is also what a chosen K of 1 means (after standardisation
 * the two hardly differ). In data coordinates: see permuteMixture.
 */
async function startingMixture(data: Prepared, D: number, components: number | undefined, rng: Rng): Promise<MixtureParams | null> {
  if (components === 0) return null;
  const chosen = components !== undefined ? fitMixture(data.train, D, components, rng) : (await chooseMixture(data.train, data.val, D, rng, yieldToLoop)).params;
  if (components === undefined && chosen.logits.length === 1) return null;
  await yieldToLoop();
  return refineMixture(data.train, D, chosen);
}

export async function fit(input: string | undefined, opts: FitOptions): Promise<number> {
  if (opts.target !== undefined) {
    const { fitTarget } = await import('./fit-target.js');
    return fitTarget({ ...opts, target: opts.target });
  }
  const signals = watchSignals(opts.model);
  try {
    return await fitWatched(input, opts, signals);
  } finally {
    signals.release();
  }
}

async function fitWatched(input: string | undefined, opts: FitOptions, signals: ReturnType<typeof watchSignals>): Promise<number> {
  const started = Date.now();
  const backendWanted = requestedBackend(opts.backend);
  await checkReadable(input);
  // Fail now, not after training, if the checkpoint cannot be written there.
  await checkCheckpointTarget(opts.model);
  const src = openSource(input);
  const table = await readTable(src, { header: opts.header, columns: opts.columns, dropInvalid: Boolean(opts.dropInvalid) });
  const seed = opts.seed ?? freshSeed();
  const rng = new Rng(seed);
  const data = await prepareData(src.name, table, {
    valSplit: opts.valSplit,
    dequantize: Boolean(opts.dequantize),
    rng,
    warn,
  });
  if (table.stats.dropped > 0) {
    await warn(`skipped ${table.stats.dropped} row(s) with missing or non-finite values (first: ${table.stats.firstDropped})`);
  }
  const D = table.columns.length;

  const engine = await startEngine(backendWanted);
  const spec = buildSpec(opts.flow, D, opts, defaultArchitecture(D, data.trainRows), rng);
  const most = supportedComponents(data.trainRows, D);
  if (opts.components !== undefined && opts.components > most) {
    // Before the spinner starts, so the warning has a line of its own.
    await warn(`--components ${opts.components}: ${data.trainRows} training rows support about ${most} (${ROWS_PER_PARAMETER} rows per mixture parameter); expect the mixture to overfit`);
  }
  // The spinner's first text; plain progress lines start with the first epoch.
  const progress = await startProgress(`fitting ${opts.flow} on ${data.trainRows} rows (${engine.backend})${opts.components !== 0 ? ': EM for the base mixture' : ''}`);
  const base = await startingMixture(data, D, opts.components, rng);
  // Every restart starts from the mixture when there is one. Restarts used to alternate with
  // the standard normal as a hedge, but once the mixture sat in the right coordinates the
  // mixture restart validated better on six of seven 2-D and 10-D sets (banana2d: 0.001 worse).
  const flow = new Flow(spec, data.standardization);
  const mixFlow = base ? new Flow({ ...spec, mixture: base.logits.length }, data.standardization) : null;
  const restartFlow = mixFlow ?? flow;
  // The mixture in the base's coordinates: identity couplings still permute them.
  const aligned = base && mixFlow ? permuteMixture(base, basePermutation(mixFlow.spec)) : null;
  // The mixture alone (every coupling the identity): a mixture restart that never validates
  // better keeps it. On 8gaussians, which is a mixture of 8 Gaussians, no flow did.
  const fallback = mixFlow ? new Float32Array(mixFlow.size) : undefined;
  if (fallback && aligned) setMixture(fallback, aligned);
  // Small data sets get smaller batches so an epoch still has several steps.
  const lr = opts.lr ?? DEFAULT_LR;
  const batchSize = opts.batchSize ?? Math.max(32, Math.min(512, Math.ceil(data.trainRows / 8)));
  signals.enter('train');
  const lastLayerScales = Array.from({ length: opts.restarts }, (_, i) => (aligned ? MIXTURE_LAST_LAYER_SCALES[i % MIXTURE_LAST_LAYER_SCALES.length] : 0));
  const restarts: Restart[] = Array.from({ length: opts.restarts }, (_, i) => {
    // Restart 0 is exactly the single-run fit of this seed; others get derived seeds.
    const s = i === 0 ? seed : (seed + Math.imul(i, 0x9e3779b9)) >>> 0;
    const init = initParams(restartFlow.spec, i === 0 ? rng : new Rng(s), { lastLayerScale: lastLayerScales[i] });
    if (aligned) {
      setMixture(init, aligned);
      return { seed: s, init, flow: restartFlow, fallback };
    }
    return { seed: s, init, flow: restartFlow };
  });
  const workers = restartWorkers(engine.backend, opts.restarts);
  const latest: (EpochReport | undefined)[] = new Array(opts.restarts);
  let trained: RestartsResult;
  try {
    trained = await trainRestarts(
      flow,
      restarts,
      data.train,
      data.val,
      {
        epochs: opts.epochs,
        batchSize,
        lr,
        patience: opts.patience,
        clipNorm: 5,
        warmupSteps: 100,
        // Halving the step size on a plateau gained ~0.05 nats on gmm10d (5,000 val rows) but
        // cost ~0.035 on a 3,000-row moons sample: small validation sets plateau by noise.
        plateauEpochs: data.valRows >= PLATEAU_MIN_VAL_ROWS ? Math.max(3, Math.round(opts.patience / 4)) : 0,
        weightDecay: WEIGHT_DECAY,
        emaDecay: EMA_DECAY,
        seed,
        threads: opts.restarts > 1 ? 1 : defaultThreads(engine.backend),
        backend: engine.backend,
      },
      {
        shouldStop: () => signals.stopped() !== null,
        onRecover: (i, msg) => progress.log(`warning: ${opts.restarts > 1 ? `restart ${i + 1}: ` : ''}${msg}`),
        onEpoch: (i, r) => {
          latest[i] = r;
          progress.update(progressLine(latest, opts.restarts, workers));
        },
      },
      workers,
    );
  } catch (err) {
    // e.g. "training diverged": say that nothing was written.
    if (err instanceof UserError) throw new UserError(`${err.message}; nothing saved (any previous checkpoint at ${opts.model} is unchanged)`, err.exitCode);
    throw err;
  } finally {
    progress.stop();
  }
  const result = trained.result;
  const chosenFlow = restarts[trained.chosen].flow ?? flow;
  // Each restart's base: Gaussians in its mixture, 0 for the standard normal.
  const restartComponents = restarts.map((r) => r.flow?.spec.mixture ?? 0);
  const chosenSpec = chosenFlow.spec;
  for (const [i, o] of trained.outcomes.entries()) {
    if (o.stopReason === 'failed') await warn(`restart ${i + 1} of ${opts.restarts} failed and was left out: ${o.error}`);
  }
  // The training rows' own log densities, summarised for `logprob --rarity`.
  let logprobQuantiles: number[];
  try {
    logprobQuantiles = quantiles(rowLogProbs(chosenFlow, result.params, data.train)).map((v) => Number(v.toPrecision(7)));
  } finally {
    flow.dispose();
    mixFlow?.dispose();
  }

  const interrupted = signals.stopped();
  if (interrupted && result.epochsRun === 0) {
    noteAlways(`${interrupted} before the first epoch finished: nothing saved; any previous checkpoint at ${opts.model} is unchanged`);
    return signalExitCode(interrupted);
  }
  signals.enter('save');
  const seconds = (Date.now() - started) / 1000;
  const training: TrainingSummary & { logprobQuantiles: number[] } = {
    logprobQuantiles,
    epochs: result.epochsRun,
    bestEpoch: result.bestEpoch,
    bestValNll: result.bestValNll,
    trainRows: data.trainRows,
    valRows: data.valRows,
    droppedRows: table.stats.dropped,
    backend: engine.backend,
    seconds: Math.round(seconds * 100) / 100,
    samplesPerSecond: Math.round(result.samplesPerSecond),
    stopReason: interrupted ? `interrupted (${interrupted})` : result.stopReason,
    seed,
    batchSize,
    lr,
    emaDecay: EMA_DECAY,
    weightDecay: WEIGHT_DECAY,
    patience: opts.patience,
    valSplit: opts.valSplit,
    dequantize: data.dequantized.length > 0,
    source: src.name,
    createdAt: new Date().toISOString(),
    history: result.history,
    restarts: trained.outcomes.map((o, i) => ({
      seed: o.seed,
      components: restartComponents[i],
      lastLayerScale: lastLayerScales[i],
      bestValNll: o.bestValNll,
      epochs: o.epochs,
      bestEpoch: o.bestEpoch,
      stopReason: o.stopReason,
    })),
    chosenRestart: trained.chosen,
  };
  const meta: Omit<ModelMeta, 'weightsManifest' | 'format' | 'version'> = {
    flow: chosenSpec,
    columns: table.columns,
    standardization: data.standardization,
    training,
  };
  if (result.fellBack) {
    // Not a failure: the data may well be such a mixture (8gaussians is one).
    note(`the ${chosenSpec.mixture}-Gaussian mixture alone validated better than the trained flow over it; saved the mixture (the couplings are the identity)`);
  } else if (result.bestEpoch === 0) {
    await warn(
      chosenSpec.mixture
        ? `validation NLL never improved on the initial flow (over the ${chosenSpec.mixture}-Gaussian base fitted by EM); the saved model is that initial one — try a smaller --lr, or --components 0`
        : 'validation NLL never improved on the initial (identity) flow; the saved model is the initial one — try a smaller --lr',
    );
  }
  await saveCheckpoint(opts.model, meta, result.params);

  const summary = {
    model: opts.model,
    backend: engine.backend,
    flow: chosenSpec.type,
    layers: chosenSpec.layers,
    hidden: chosenSpec.hidden,
    // Gaussians in the base mixture; 0 = the standard normal base.
    components: chosenSpec.mixture ?? 0,
    dim: D,
    columns: table.columns,
    trainRows: data.trainRows,
    valRows: data.valRows,
    droppedRows: table.stats.dropped,
    epochs: result.epochsRun,
    bestEpoch: result.bestEpoch,
    bestValNll: result.bestValNll,
    bestValLogLik: -result.bestValNll,
    // Log-likelihood per dimension, the sign eval's natsPerDim has.
    valNatsPerDim: -result.bestValNll / D,
    seconds: training.seconds,
    samplesPerSecond: training.samplesPerSecond,
    stopReason: training.stopReason,
    seed,
    restarts: opts.restarts,
    // An index into restartValNlls, 0-based like model.json's training.chosenRestart.
    chosenRestart: trained.chosen,
    restartValNlls: trained.outcomes.map((o) => o.bestValNll),
    restartComponents,
  };
  if (opts.json) await writeStdout(JSON.stringify(summary) + '\n');
  const why = interrupted
    ? `${interrupted}: saved the best weights so far`
    : result.stopReason === 'patience'
      ? `stopped early (no improvement for ${opts.patience} epochs)`
      : `reached --epochs ${opts.epochs}`;
  const saved =
    `saved ${opts.model}: ${chosenSpec.type} ${chosenSpec.layers}×${chosenSpec.hidden}${chosenSpec.mixture ? ` over a ${chosenSpec.mixture}-Gaussian base` : ''} on ${D} columns, ${data.trainRows} train / ${data.valRows} val rows; ` +
    `${result.epochsRun} epochs, ${why}; best val log-lik ${(-result.bestValNll).toFixed(4)} nats/row (epoch ${result.bestEpoch}` +
    `${opts.restarts > 1 ? `, restart ${trained.chosen + 1} of ${opts.restarts}` : ''}); ${formatDuration(seconds * 1000)} on ${engine.backend}`;
  // After an interruption this line is the answer to "what happened to my model?": shown even with -q.
  if (interrupted) noteAlways(saved);
  else note(saved);
  const late = signals.stopped();
  if (late) return signalExitCode(late);
  if (data.trainRows < 200) {
    // Deliberately after the summary: it is advice about the result.
    await warn(`only ${data.trainRows} training rows: flows overfit small data; compare the val log-lik with a simpler model`);
  }
  return 0;
}
