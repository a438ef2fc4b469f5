/**
 * `nf fit`: CSV rows → trained flow → checkpoint.
 */
import { saveCheckpoint, type ModelMeta, type TrainingSummary } from '../checkpoint.js';
import { openSource, checkReadable, readTable } from '../data/csv-reader.js';
import { requestedBackend, startEngine } from '../engine.js';
import { Flow } from '../flow/flow.js';
import { initParams, makePermutations, type FlowSpec, type FlowType } from '../flow/spec.js';
import { prepareData } from '../train/prepare.js';
import { Rng, freshSeed } from '../rng.js';
import { formatDuration, note, startProgress, warn } from '../terminal.js';
import { train, type TrainResult } from '../train/trainer.js';

export interface FitOptions {
  model: string;
  backend?: string;
  quiet?: boolean;
  json?: boolean;
  seed?: number;
  header: boolean;
  columns?: string[];
  flow: FlowType;
  layers: number;
  hidden: number;
  epochs: number;
  batchSize?: number;
  lr: number;
  valSplit: number;
  patience: number;
  dropInvalid?: boolean;
  dequantize?: boolean;
}

/** Signals stop training gracefully the first time and end the process the second. */
function watchSignals(): { stopped: () => NodeJS.Signals | null; release: () => void } {
  let got: NodeJS.Signals | null = null;
  const handler = (sig: NodeJS.Signals): void => {
    if (got) {
      process.stderr.write(`\nnf: ${sig} again: stopping now; nothing saved, any previous checkpoint is unchanged\n`);
      process.exit(sig === 'SIGINT' ? 130 : 143);
    }
    got = sig;
    process.stderr.write(`\nnf: ${sig}: finishing the current step (press again to abort without saving)\n`);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    stopped: () => got,
    release: () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}

export async function fit(input: string | undefined, opts: FitOptions): Promise<number> {
  const started = Date.now();
  const backendWanted = requestedBackend(opts.backend);
  await checkReadable(input);
  const src = openSource(input);
  const table = await readTable(src, { header: opts.header, columns: opts.columns, dropInvalid: Boolean(opts.dropInvalid) });
  if (table.stats.dropped > 0) {
    await warn(`skipped ${table.stats.dropped} row(s) with missing or non-finite values (first: ${table.stats.firstDropped})`);
  }
  const seed = opts.seed ?? freshSeed();
  const rng = new Rng(seed);
  const data = await prepareData(src.name, table, {
    valSplit: opts.valSplit,
    dequantize: Boolean(opts.dequantize),
    rng,
    warn,
  });
  const D = table.columns.length;

  const engine = await startEngine(backendWanted);
  const spec: FlowSpec = {
    type: opts.flow,
    dim: D,
    layers: opts.layers,
    hidden: opts.hidden,
    hiddenLayers: 2,
    scaleBound: 2,
    permutations: makePermutations(D, opts.layers, rng),
  };
  const flow = new Flow(spec, data.standardization);
  // Small data sets get smaller batches so an epoch still has several steps.
  const batchSize = opts.batchSize ?? Math.max(32, Math.min(512, Math.ceil(data.trainRows / 8)));
  const progress = await startProgress(`fitting ${spec.type} on ${data.trainRows} rows (${engine.backend})`);
  const signals = watchSignals();
  let result: TrainResult;
  try {
    result = await train(
      flow,
      initParams(spec, rng),
      data.train,
      data.val,
      {
        epochs: opts.epochs,
        batchSize,
        lr: opts.lr,
        patience: opts.patience,
        clipNorm: 5,
        warmupSteps: 100,
        plateauEpochs: Number(process.env.NF_PLATEAU ?? 0),
        weightDecay: 0,
        seed,
      },
      {
        shouldStop: () => signals.stopped() !== null,
        onRecover: (msg) => progress.log(`warning: ${msg}`),
        onEpoch: (r) => {
          const perEpoch = r.elapsedMs / r.epoch;
          const eta = perEpoch * (r.epochs - r.epoch);
          progress.update(
            `epoch ${r.epoch}/${r.epochs}  train NLL ${r.trainNll.toFixed(4)}  val NLL ${r.valNll.toFixed(4)}  best ${r.bestValNll.toFixed(4)} @${r.bestEpoch}  ` +
              `${formatDuration(r.elapsedMs)} elapsed, ≤${formatDuration(eta)} left`,
          );
        },
      },
    );
  } finally {
    progress.stop();
    signals.release();
    flow.dispose();
  }

  const interrupted = signals.stopped();
  if (interrupted && result.epochsRun === 0) {
    note(`${interrupted} before the first epoch finished: nothing saved; any previous checkpoint at ${opts.model} is unchanged`);
    return interrupted === 'SIGINT' ? 130 : 143;
  }
  const seconds = (Date.now() - started) / 1000;
  const training: TrainingSummary = {
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
    lr: opts.lr,
    patience: opts.patience,
    valSplit: opts.valSplit,
    dequantize: data.dequantized.length > 0,
    source: src.name,
    createdAt: new Date().toISOString(),
    history: result.history,
  };
  const meta: Omit<ModelMeta, 'weightsManifest' | 'format' | 'version'> = {
    flow: spec,
    columns: table.columns,
    standardization: data.standardization,
    training,
  };
  if (result.bestEpoch === 0) {
    await warn('validation NLL never improved on the initial (identity) flow; the saved model is the initial one — try a smaller --lr');
  }
  await saveCheckpoint(opts.model, meta, result.params);

  const summary = {
    model: opts.model,
    backend: engine.backend,
    flow: spec.type,
    layers: spec.layers,
    hidden: spec.hidden,
    dim: D,
    columns: table.columns,
    trainRows: data.trainRows,
    valRows: data.valRows,
    droppedRows: table.stats.dropped,
    epochs: result.epochsRun,
    bestEpoch: result.bestEpoch,
    bestValNll: result.bestValNll,
    bestValLogLik: -result.bestValNll,
    valNatsPerDim: result.bestValNll / D,
    seconds: training.seconds,
    samplesPerSecond: training.samplesPerSecond,
    stopReason: training.stopReason,
    seed,
  };
  if (opts.json) process.stdout.write(JSON.stringify(summary) + '\n');
  const why = interrupted
    ? `${interrupted}: saved the best weights so far`
    : result.stopReason === 'patience'
      ? `stopped early (no improvement for ${opts.patience} epochs)`
      : `reached --epochs ${opts.epochs}`;
  note(
    `saved ${opts.model}: ${spec.type} ${spec.layers}×${spec.hidden} on ${D} columns, ${data.trainRows} train / ${data.valRows} val rows; ` +
      `${result.epochsRun} epochs, ${why}; best val log-lik ${(-result.bestValNll).toFixed(4)} nats/row (epoch ${result.bestEpoch}); ` +
      `${formatDuration(seconds * 1000)} on ${engine.backend}`,
  );
  if (interrupted) return interrupted === 'SIGINT' ? 130 : 143;
  if (data.trainRows < 200) {
    // Deliberately after the summary: it is advice about the result.
    await warn(`only ${data.trainRows} training rows: flows overfit small data; compare the val log-lik with a simpler model`);
  }
  return 0;
}
