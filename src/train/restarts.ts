/**
 * Restarts: train the same architecture (or one per restart) from several initialisations on one train/val
 * split and keep the one with the best validation NLL. On rings, seed alone moved the
 * test log-likelihood by 0.15 nats, so one draw is a lottery. The main thread trains
 * restart 0; others run in worker threads when cores are free (the wasm and cpu backends
 * use one core each), else one after another here. Which restart wins depends only on
 * the seeds, never on thread timing.
 */
import { Worker } from 'node:worker_threads';
import { UserError } from '../errors.js';
import type { Flow, Standardization } from '../flow/flow.js';
import type { FlowSpec } from '../flow/spec.js';
import { train, type EpochReport, type StopReason, type TrainConfig, type TrainResult } from './trainer.js';

export interface Restart {
  /** Seed for this restart's shuffling (restart 0 uses the fit's own seed). */
  seed: number;
  init: Float32Array;
  /** The flow this restart trains when it differs from the shared one (e.g. its base density). */
  flow?: Flow;
  /** Parameters kept instead if no epoch validates better (see train). */
  fallback?: Float32Array;
}

export interface RestartOutcome {
  seed: number;
  /** Best validation NLL, original units; NaN if it failed or ran no epoch. */
  bestValNll: number;
  epochs: number;
  bestEpoch: number;
  stopReason: StopReason | 'failed';
  error?: string;
}

export interface RestartHooks {
  onEpoch?: (restart: number, r: EpochReport) => void;
  onRecover?: (restart: number, message: string) => void;
  /** Polled between steps (and by a timer while workers run): true stops every restart. */
  shouldStop?: () => boolean;
}

export interface RestartsResult {
  result: TrainResult;
  chosen: number;
  outcomes: RestartOutcome[];
}

/** What a restart worker gets (structured-cloned). */
export interface RestartWorkerInit {
  spec: FlowSpec;
  standardization: Standardization;
  init: Float32Array;
  fallback?: Float32Array;
  train: Float32Array;
  val: Float32Array;
  cfg: TrainConfig;
  /** Int32 flag: non-zero asks the worker to stop after its current step. */
  stop: SharedArrayBuffer;
}

export type RestartWorkerMessage =
  | { type: 'epoch'; report: EpochReport }
  | { type: 'warn'; message: string }
  | { type: 'done'; result: TrainResult }
  | { type: 'error'; message: string; userError: boolean };

type Attempt = { ok: true; result: TrainResult } | { ok: false; error: Error };

const failed = (seed: number, error: Error): RestartOutcome => ({
  seed,
  bestValNll: Number.NaN,
  epochs: 0,
  bestEpoch: 0,
  stopReason: 'failed',
  error: error.message,
});

/**
 * Trains every restart and returns the best by validation NLL (ties: the lower index).
 * `workers` is how many restarts may run in worker threads at once (0: none).
 */
export async function trainRestarts(
  flow: Flow,
  restarts: Restart[],
  trainRows: Float32Array,
  valRows: Float32Array,
  cfg: TrainConfig,
  hooks: RestartHooks,
  workers: number,
): Promise<RestartsResult> {
  if (restarts.length === 0) throw new Error('trainRestarts needs at least one restart');
  const stop = new SharedArrayBuffer(4);
  const stopFlag = new Int32Array(stop);
  const shouldStop = (): boolean => {
    const s = hooks.shouldStop?.() ?? false;
    if (s) Atomics.store(stopFlag, 0, 1);
    return s;
  };
  const attempts: Attempt[] = new Array(restarts.length);
  const runHere = async (i: number): Promise<void> => {
    try {
      const result = await train(
        restarts[i].flow ?? flow,
        restarts[i].init,
        trainRows,
        valRows,
        { ...cfg, seed: restarts[i].seed },
        {
          shouldStop,
          onEpoch: (r) => hooks.onEpoch?.(i, r),
          onRecover: (m) => hooks.onRecover?.(i, m),
        },
        restarts[i].fallback,
      );
      attempts[i] = { ok: true, result };
    } catch (err) {
      attempts[i] = { ok: false, error: err as Error };
    }
  };

  // Restarts 1.. go to workers, at most `workers` at a time; any a worker could not start
  // (or all of them, with workers = 0) run here after restart 0.
  const queue = restarts.map((_, i) => i).slice(1);
  const leftovers: number[] = [];
  const poll = setInterval(shouldStop, 100);
  const lanes: Promise<void>[] = [];
  const lane = async (): Promise<void> => {
    for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
      const attempt = await runInWorker(restarts[i].flow ?? flow, restarts[i], trainRows, valRows, cfg, stop, {
        onEpoch: (r) => hooks.onEpoch?.(i, r),
        onRecover: (m) => hooks.onRecover?.(i, m),
      });
      if (attempt === 'unstarted') leftovers.push(i);
      else attempts[i] = attempt;
      if (Atomics.load(stopFlag, 0) !== 0) break;
    }
  };
  try {
    for (let k = 0; k < Math.min(workers, queue.length); k++) lanes.push(lane());
    if (lanes.length === 0) leftovers.push(...queue.splice(0));
    await runHere(0);
    await Promise.all(lanes);
    leftovers.push(...queue.splice(0));
    for (const i of leftovers.sort((a, b) => a - b)) {
      if (Atomics.load(stopFlag, 0) !== 0) break;
      await runHere(i);
    }
  } finally {
    clearInterval(poll);
  }

  const outcomes: RestartOutcome[] = restarts.map((r, i) => {
    const a = attempts[i];
    if (a === undefined) return { ...failed(r.seed, new Error('not run (interrupted)')), stopReason: 'interrupted' };
    if (!a.ok) return failed(r.seed, a.error);
    const { bestValNll, epochsRun, bestEpoch, stopReason } = a.result;
    return { seed: r.seed, bestValNll, epochs: epochsRun, bestEpoch, stopReason };
  });
  // Best validation NLL among restarts that ran an epoch; a NaN never beats a number.
  const done = attempts.map((a) => (a?.ok ? a.result : undefined));
  const score = (r: TrainResult | undefined): number => (r && r.epochsRun > 0 && !Number.isNaN(r.bestValNll) ? r.bestValNll : Infinity);
  let chosen = -1;
  for (let i = 0; i < done.length; i++) if (done[i] && (chosen < 0 || score(done[i]) < score(done[chosen]))) chosen = i;
  if (chosen < 0) {
    // Every restart failed: report restart 0's error (or the first one there is).
    const failure = attempts.find((a): a is { ok: false; error: Error } => a?.ok === false);
    throw failure?.error ?? new Error('no restart ran');
  }
  return { result: done[chosen] as TrainResult, chosen, outcomes };
}

function runInWorker(
  flow: Flow,
  restart: Restart,
  trainRows: Float32Array,
  valRows: Float32Array,
  cfg: TrainConfig,
  stop: SharedArrayBuffer,
  hooks: { onEpoch: (r: EpochReport) => void; onRecover: (m: string) => void },
): Promise<Attempt | 'unstarted'> {
  const init: RestartWorkerInit = {
    spec: flow.spec,
    standardization: flow.standardization,
    init: restart.init,
    fallback: restart.fallback,
    train: trainRows,
    val: valRows,
    cfg: { ...cfg, seed: restart.seed },
    stop,
  };
  return new Promise((resolve) => {
    let settled = false;
    let started = false;
    let worker: Worker;
    const settle = (v: Attempt | 'unstarted'): void => {
      if (settled) return;
      settled = true;
      void worker.terminate();
      resolve(v);
    };
    try {
      worker = new Worker(new URL('./restart-worker.js', import.meta.url), { workerData: init });
    } catch {
      resolve('unstarted');
      return;
    }
    worker.on('message', (m: RestartWorkerMessage) => {
      started = true;
      if (m.type === 'epoch') hooks.onEpoch(m.report);
      else if (m.type === 'warn') hooks.onRecover(m.message);
      else if (m.type === 'done') settle({ ok: true, result: m.result });
      else settle({ ok: false, error: m.userError ? new UserError(m.message) : new Error(m.message) });
    });
    // A worker that dies before its first message (no memory, engine would not load) is
    // retried on the main thread; one that dies later counts as a failed restart.
    worker.on('error', (err) => settle(started ? { ok: false, error: err } : 'unstarted'));
    worker.on('exit', (code) => settle(started ? { ok: false, error: new Error(`restart worker exited with code ${code}`) } : 'unstarted'));
  });
}
