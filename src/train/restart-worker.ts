/**
 * Worker thread that trains one restart (its own initialisation and shuffling) on the
 * same split as the main thread, and posts back the best weights it found.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { startEngine } from '../engine.js';
import { UserError } from '../errors.js';
import { Flow } from '../flow/flow.js';
import { train, type EpochReport } from './trainer.js';
import type { RestartWorkerInit, RestartWorkerMessage } from './restarts.js';

const init = workerData as RestartWorkerInit;
const port = parentPort;
if (!port) throw new Error('restart-worker must run in a worker thread');
const stop = new Int32Array(init.stop);
const post = (m: RestartWorkerMessage, transfer: ArrayBuffer[] = []): void => port.postMessage(m, transfer);

try {
  await startEngine(init.cfg.backend);
  const flow = new Flow(init.spec, init.standardization);
  try {
    const hooks = {
      shouldStop: () => Atomics.load(stop, 0) !== 0,
      onRecover: (message: string) => post({ type: 'warn', message }),
      onEpoch: (report: EpochReport) => post({ type: 'epoch', report }),
    };
    const result = await train(flow, init.init, init.train, init.val, { ...init.cfg, threads: 1 }, hooks, init.fallback);
    const params = Float32Array.from(result.params);
    post({ type: 'done', result: { ...result, params } }, [params.buffer]);
  } finally {
    flow.dispose();
  }
} catch (err) {
  post({ type: 'error', message: (err as Error).message, userError: err instanceof UserError });
}
