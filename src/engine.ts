/**
 * Backend selection. Automatic order: WebAssembly, then native TensorFlow (tfjs-node, an
 * optional dependency), then pure JS. WebAssembly comes first because it measured as fast
 * as or faster than native for nf's models on 2 cores (moons, 8×64: 12–15k vs 7.6k
 * samples/s; 8×128: 7.6–8.4k vs 7.0–8.4k) while native costs ~1.5 s and ~390 MB to load,
 * which breaks the start-up and memory budgets of `logprob`. `--backend tensorflow` or
 * NF_BACKEND=tensorflow still selects native.
 * tfjs is loaded with require(): measured ~200 ms faster than ESM import for the
 * large CommonJS bundles, which matters for `logprob` on a few rows.
 */
import { createRequire } from 'node:module';
import { UserError, UsageError } from './errors.js';
import { setTf, type Tf } from './tf.js';

export const BACKENDS = ['tensorflow', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKENDS)[number];
/** Tried in this order when no backend is requested (see the note at the top). */
export const AUTO_ORDER: readonly BackendName[] = ['wasm', 'tensorflow', 'cpu'];

export interface Engine {
  tf: Tf;
  backend: BackendName;
  /** Backends tried before the one in use, with why they did not load. */
  skipped: { backend: BackendName; reason: string }[];
}

const require = createRequire(import.meta.url);

export function parseBackend(value: string): BackendName {
  const v = value.trim().toLowerCase();
  const alias: Record<string, BackendName> = { native: 'tensorflow', node: 'tensorflow', tfjs_node: 'tensorflow' };
  const name = (BACKENDS as readonly string[]).includes(v) ? (v as BackendName) : alias[v];
  if (!name) throw new UsageError(`unknown backend '${value}' (expected one of: ${BACKENDS.join(', ')})`);
  return name;
}

function firstLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0].trim();
}

function loadCore(): Tf {
  const tf = require('@tensorflow/tfjs-core') as Tf;
  // Prod mode skips per-op NaN checks and silences the "install tfjs-node" banner.
  tf.enableProdMode();
  return tf;
}

async function tryBackend(tf: Tf, name: BackendName): Promise<string | null> {
  try {
    if (name === 'tensorflow') {
      // tfjs-node prints TensorFlow's C++ logs to stderr unless told otherwise.
      process.env.TF_CPP_MIN_LOG_LEVEL ??= '2';
      try {
        require.resolve('@tensorflow/tfjs-node');
      } catch {
        return '@tensorflow/tfjs-node is not installed (its install script downloads libtensorflow, which is often unreachable; see "Backends" in the README)';
      }
      require('@tensorflow/tfjs-node');
    } else if (name === 'wasm') {
      require('@tensorflow/tfjs-backend-wasm');
    } else {
      require('@tensorflow/tfjs-backend-cpu');
    }
    const ok = await tf.setBackend(name);
    if (!ok || tf.getBackend() !== name) return `backend '${name}' failed to initialise`;
    return null;
  } catch (err) {
    return firstLine(err);
  }
}

let current: Engine | null = null;

/**
 * Loads tfjs and the requested backend (or the best that loads). Idempotent per process;
 * asking for a different backend later switches to it.
 */
export async function startEngine(requested?: BackendName): Promise<Engine> {
  if (current && (!requested || current.backend === requested)) return current;
  const tf = current?.tf ?? loadCore();
  setTf(tf);
  const skipped: Engine['skipped'] = [];
  if (requested) {
    const reason = await tryBackend(tf, requested);
    if (reason) throw new UserError(`cannot use backend '${requested}': ${reason}`);
    current = { tf, backend: requested, skipped };
    return current;
  }
  for (const name of AUTO_ORDER) {
    const reason = await tryBackend(tf, name);
    if (!reason) {
      current = { tf, backend: name, skipped };
      return current;
    }
    skipped.push({ backend: name, reason });
  }
  throw new UserError(`no TensorFlow.js backend could be loaded: ${skipped.map((s) => `${s.backend}: ${s.reason}`).join('; ')}`);
}

/** Which backends can load in this process (for `nf info --backends` and the benchmark). */
export async function probeBackends(): Promise<{ backend: BackendName; ok: boolean; reason?: string }[]> {
  const tf = current?.tf ?? loadCore();
  setTf(tf);
  const out: { backend: BackendName; ok: boolean; reason?: string }[] = [];
  for (const name of BACKENDS) {
    const reason = await tryBackend(tf, name);
    out.push(reason ? { backend: name, ok: false, reason } : { backend: name, ok: true });
  }
  if (current) await tf.setBackend(current.backend);
  return out;
}

/**
 * Registers a gradient for every TensorFlow.js op (tfjs-core alone registers none). Only
 * reverse-KL fits need it, since gradients must flow through the user's own ops; nf's data
 * fits use a hand-written backward pass. Call after startEngine.
 */
export function registerAllGradients(): void {
  require('@tensorflow/tfjs-layers');
}

/** Backend from the command line, else $NF_BACKEND, else automatic. */
export function requestedBackend(option: string | undefined): BackendName | undefined {
  const value = option ?? process.env.NF_BACKEND;
  return value && value.trim() !== '' ? parseBackend(value) : undefined;
}
