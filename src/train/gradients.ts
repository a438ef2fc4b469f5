/**
 * Where a training step's loss and gradient are computed: on this thread, or split across
 * this thread and worker threads (data parallelism). TensorFlow.js's wasm backend runs
 * single-threaded in Node, so a second core only helps if a second thread does half the
 * batch; the parameters live in shared memory, so workers read them without copies.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { BackendName } from '../engine.js';
import type { Standardization } from '../flow/flow.js';
import type { Flow } from '../flow/flow.js';
import type { FlowSpec } from '../flow/spec.js';
import { tf, type Tensor } from '../tf.js';

export interface BatchResult {
  /** Mean loss over the batch (standardised space). */
  loss: number;
  /** Gradient of the mean loss. Valid until the next call. */
  grad: Float32Array;
}

export interface GradientComputer {
  compute(params: Float32Array, idx: Int32Array): Promise<BatchResult>;
  close(): Promise<void>;
}

/** Loss and gradient of rows `idx` of `data`, packed as [loss, ...grad] (one read-back). */
export function localBatch(flow: Flow, data: Tensor, params: Float32Array, idx: Int32Array): Float32Array {
  const packed = tf.tidy(() => {
    const xb = tf.gather(data, tf.tensor1d(idx, 'int32'));
    const r = flow.lossAndGrad(flow.makeWeights(params, true), xb);
    return tf.concat([tf.reshape(r.loss, [1]), r.grad]);
  });
  const values = packed.dataSync() as Float32Array;
  packed.dispose();
  return values;
}

export class LocalGradients implements GradientComputer {
  constructor(
    private readonly flow: Flow,
    private readonly data: Tensor,
  ) {}

  async compute(params: Float32Array, idx: Int32Array): Promise<BatchResult> {
    const v = localBatch(this.flow, this.data, params, idx);
    return { loss: v[0], grad: v.subarray(1) };
  }

  async close(): Promise<void> {}
}

export interface WorkerInit {
  backend: BackendName;
  spec: FlowSpec;
  standardization: Standardization;
  rows: Float32Array;
  params: SharedArrayBuffer;
  result: SharedArrayBuffer;
}

interface WorkerHandle {
  worker: Worker;
  result: Float32Array;
  pending: { resolve: () => void; reject: (e: Error) => void } | null;
}

/** This thread computes one share of every batch, each worker another. */
export class ParallelGradients implements GradientComputer {
  private readonly combined: Float32Array;

  private constructor(
    private readonly flow: Flow,
    private readonly data: Tensor,
    private readonly workers: WorkerHandle[],
  ) {
    this.combined = new Float32Array(flow.size);
  }

  static async start(
    flow: Flow,
    data: Tensor,
    rows: Float32Array,
    params: Float32Array,
    backend: BackendName,
    extraThreads: number,
  ): Promise<ParallelGradients> {
    if (!(params.buffer instanceof SharedArrayBuffer)) throw new Error('parameters must live in shared memory');
    const handles: WorkerHandle[] = [];
    const ready: Promise<void>[] = [];
    for (let i = 0; i < extraThreads; i++) {
      const result = new SharedArrayBuffer((flow.size + 1) * 4);
      const init: WorkerInit = { backend, spec: flow.spec, standardization: flow.standardization, rows, params: params.buffer, result };
      const worker = new Worker(new URL('./grad-worker.js', import.meta.url), { workerData: init });
      const handle: WorkerHandle = { worker, result: new Float32Array(result), pending: null };
      ready.push(
        new Promise<void>((resolve, reject) => {
          worker.once('message', () => resolve());
          worker.once('error', reject);
        }),
      );
      worker.on('message', () => {
        const p = handle.pending;
        handle.pending = null;
        p?.resolve();
      });
      worker.on('error', (err) => {
        const p = handle.pending;
        handle.pending = null;
        p?.reject(err);
      });
      handles.push(handle);
    }
    try {
      await Promise.all(ready);
    } catch (err) {
      await Promise.all(handles.map((h) => h.worker.terminate()));
      throw err;
    }
    return new ParallelGradients(flow, data, handles);
  }

  async compute(params: Float32Array, idx: Int32Array): Promise<BatchResult> {
    const B = idx.length;
    const parts = this.workers.length + 1;
    const share = Math.ceil(B / parts);
    // Workers start first so they run while this thread computes its own share.
    const waits: Promise<void>[] = [];
    const sizes: number[] = [];
    this.workers.forEach((h, i) => {
      const rows = idx.slice((i + 1) * share, Math.min(B, (i + 2) * share));
      sizes.push(rows.length);
      if (rows.length === 0) return;
      waits.push(
        new Promise<void>((resolve, reject) => {
          h.pending = { resolve, reject };
          h.worker.postMessage(rows, [rows.buffer]);
        }),
      );
    });
    const own = localBatch(this.flow, this.data, params, idx.subarray(0, Math.min(share, B)));
    await Promise.all(waits);
    // Mean over the whole batch = size-weighted mean of the shares (fixed order: deterministic).
    const ownRows = Math.min(share, B);
    const out = this.combined;
    let loss = own[0] * ownRows;
    for (let j = 0; j < out.length; j++) out[j] = own[j + 1] * ownRows;
    this.workers.forEach((h, i) => {
      const n = sizes[i];
      if (n === 0) return;
      loss += h.result[0] * n;
      const r = h.result;
      for (let j = 0; j < out.length; j++) out[j] += r[j + 1] * n;
    });
    for (let j = 0; j < out.length; j++) out[j] /= B;
    return { loss: loss / B, grad: out };
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((h) => h.worker.terminate()));
  }
}

/** Threads to train with: 1 unless NF_THREADS asks for more (single-threaded backends only). */
export function defaultThreads(backend: BackendName): number {
  if (backend === 'tensorflow') return 1; // native TensorFlow already uses every core
  const env = Number(process.env.NF_THREADS);
  if (Number.isInteger(env) && env >= 1) return Math.min(env, availableParallelism());
  // Off by default: on this 2-core machine two threads measured slower than one
  // (moons 8×64: 8–10k vs 12–15k samples/s; 8×128: 6.3–6.5k vs 7.6–8.4k) — per-op
  // overhead, not arithmetic, dominates a step at these sizes. NF_THREADS=n opts in.
  return 1;
}
