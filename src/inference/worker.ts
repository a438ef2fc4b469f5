/**
 * Worker thread for inference: holds its own copy of the model and scores or samples the
 * chunks it is sent, so a second core works while the main thread reads and writes CSV.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { startEngine } from '../engine.js';
import { Model } from '../model.js';
import type { HelperInit, HelperRequest, HelperReply } from './helper.js';

const init = workerData as HelperInit;
const port = parentPort;
if (!port) throw new Error('inference worker must run in a worker thread');

await startEngine(init.backend);
const model = Model.fromParams(init.meta, init.params);

port.on('message', (req: HelperRequest) => {
  const out = req.kind === 'logprob' ? model.logProb(req.data, req.rows) : model.transform(req.data, req.rows);
  // A fresh buffer per reply, handed over without a copy.
  const reply: HelperReply = Float32Array.from(out);
  port.postMessage(reply, [reply.buffer as ArrayBuffer]);
});
port.postMessage('ready');
