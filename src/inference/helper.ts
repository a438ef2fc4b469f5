/**
 * A second thread for `logprob`, `eval` and `sample` on large inputs. TensorFlow.js's wasm
 * backend computes on one thread in Node, so on a multi-core machine a worker with its own
 * copy of the model takes every other chunk. Each chunk is computed whole by one thread
 * with the same kernels, so the output is identical to a single-threaded run.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { ModelMeta } from '../checkpoint.js';
import type { BackendName } from '../engine.js';
import type { Model } from '../model.js';

export interface HelperInit {
  backend: BackendName;
  meta: ModelMeta;
  params: Float32Array;
}

export interface HelperRequest {
  kind: 'logprob' | 'sample';
  /** Rows to score, or base draws to map to data. */
  data: Float32Array;
  rows: number;
}

export type HelperReply = Float32Array;

/**
 * Whether a helper thread should be used: not on native TensorFlow (it already uses every
 * core), not on one core, and not when NF_THREADS=1 asks for a single thread.
 */
export function helperWanted(backend: BackendName): boolean {
  if (backend === 'tensorflow') return false;
  const env = Number(process.env.NF_THREADS);
  if (Number.isInteger(env) && env >= 1) return env > 1;
  return availableParallelism() > 1;
}

export class InferenceHelper {
  private busy = false;
  private ready = false;
  private failed = false;
  private pending: { resolve: (v: Float32Array) => void; reject: (e: Error) => void } | null = null;

  private constructor(private readonly worker: Worker) {
    worker.on('message', (msg: HelperReply | 'ready') => {
      if (msg === 'ready') {
        this.ready = true;
        return;
      }
      const p = this.pending;
      this.pending = null;
      this.busy = false;
      p?.resolve(msg);
    });
    worker.on('error', (err) => {
      // A helper that cannot start or crashes is not the user's problem: the main thread
      // carries on alone; a chunk it had in hand is reported to whoever awaits it.
      this.failed = true;
      const p = this.pending;
      this.pending = null;
      p?.reject(err);
    });
    // Not unref()'d: while this thread awaits a chunk, the worker is all that keeps the
    // event loop alive. Commands close() it in a finally block.
  }

  /** Starts loading the model in a worker; returns at once (the helper is idle until ready). */
  static start(init: HelperInit): InferenceHelper {
    const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: init });
    return new InferenceHelper(worker);
  }

  /** Ready and not computing: the next chunk may go here. */
  get idle(): boolean {
    return this.ready && !this.busy && !this.failed;
  }

  run(req: HelperRequest): Promise<Float32Array> {
    if (!this.idle) throw new Error('inference helper is not idle');
    this.busy = true;
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      // Copy: transferring would detach the caller's array, which the fallback reads if
      // the helper fails.
      const data = Float32Array.from(req.data);
      this.worker.postMessage({ kind: req.kind, data, rows: req.rows } satisfies HelperRequest, [data.buffer]);
    });
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}

/** Inputs with more chunks than this get a helper: below, starting one costs more than it saves. */
const HELPER_AFTER_CHUNKS = 2;

/**
 * Computes chunks on this thread or, once the input has proved large, on an idle helper.
 * Callers keep at most two chunks in flight and consume results in order.
 */
export class ChunkRunner {
  private helper: InferenceHelper | null = null;
  private submitted = 0;

  constructor(
    private readonly model: Model,
    /** What a helper needs to load the model; null: this thread only. */
    private readonly helperInit: HelperInit | null,
  ) {}

  async submit(kind: HelperRequest['kind'], data: Float32Array, rows: number): Promise<Float32Array> {
    this.submitted += 1;
    if (!this.helper && this.helperInit && this.submitted > HELPER_AFTER_CHUNKS) this.helper = InferenceHelper.start(this.helperInit);
    // The helper's messages are events: a caller whose writes only fill a buffer never
    // gives the event loop a turn, so take one per chunk while there is a helper.
    if (this.helper) await new Promise<void>((resolve) => setImmediate(resolve));
    const local = (): Float32Array => (kind === 'logprob' ? this.model.logProb(data, rows) : this.model.transform(data, rows));
    if (this.helper?.idle) return this.helper.run({ kind, data, rows }).catch(() => local());
    return local();
  }

  async close(): Promise<void> {
    await this.helper?.close();
    this.helper = null;
  }
}

/**
 * Results of `submit` for each chunk, in input order, with two chunks in flight: one may be
 * on the helper thread while this thread computes or reads the next.
 */
export async function* inOrder<C>(
  chunks: AsyncIterable<C> | Iterable<C>,
  submit: (chunk: C) => Promise<Float32Array>,
): AsyncGenerator<{ chunk: C; out: Float32Array }> {
  const queue: { chunk: C; out: Promise<Float32Array> }[] = [];
  for await (const chunk of chunks) {
    queue.push({ chunk, out: submit(chunk) });
    if (queue.length >= 2) {
      const head = queue.shift()!;
      yield { chunk: head.chunk, out: await head.out };
    }
  }
  for (const head of queue) yield { chunk: head.chunk, out: await head.out };
}
