/**
 * Worker thread for data-parallel training: holds the training rows and computes the
 * loss and gradient of the rows it is sent, at the parameters in shared memory.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { startEngine } from '../engine.js';
import { Flow } from '../flow/flow.js';
import { tf } from '../tf.js';
import { localBatch, type WorkerInit } from './gradients.js';

const init = workerData as WorkerInit;
const port = parentPort;
if (!port) throw new Error('grad-worker must run in a worker thread');

await startEngine(init.backend);
const flow = new Flow(init.spec, init.standardization);
const dim = init.spec.dim;
const data = tf.tensor2d(init.rows, [init.rows.length / dim, dim]);
const params = new Float32Array(init.params);
const result = new Float32Array(init.result);

port.on('message', (idx: Int32Array) => {
  result.set(localBatch(flow, data, params, idx));
  port.postMessage(0);
});
port.postMessage('ready');
