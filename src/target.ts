/**
 * User-supplied target densities for `nf fit --target`: an ES module exporting `dim`,
 * optional `columns`, and `logProb(x, tf)` → [batch] unnormalised log densities.
 * Importing the module runs the user's code, by design and only on the user's request;
 * checkpoints are never code.
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { stat } from 'node:fs/promises';
import { UserError } from './errors.js';
import type { Tensor, Tf } from './tf.js';

export interface Target {
  path: string;
  dim: number;
  columns: string[];
  logProb: (x: Tensor, tf: Tf) => Tensor;
}

export async function loadTarget(path: string): Promise<Target> {
  const full = resolve(path);
  const s = await stat(full).catch(() => null);
  if (!s || !s.isFile()) throw new UserError(`${path}: no such target module`);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(full).href)) as Record<string, unknown>;
  } catch (err) {
    throw new UserError(`${path}: cannot import the target module: ${(err as Error).message.split('\n')[0]}`);
  }
  const dim = mod.dim;
  if (typeof dim !== 'number' || !Number.isInteger(dim) || dim < 2) {
    throw new UserError(`${path}: must export 'dim', an integer ≥ 2 (got ${JSON.stringify(dim)})`);
  }
  if (typeof mod.logProb !== 'function') throw new UserError(`${path}: must export a function 'logProb(x, tf)'`);
  let columns = Array.from({ length: dim }, (_, i) => `x${i + 1}`);
  if (mod.columns !== undefined) {
    const c = mod.columns;
    if (!Array.isArray(c) || c.length !== dim || c.some((v) => typeof v !== 'string' || v === '') || new Set(c).size !== dim) {
      throw new UserError(`${path}: 'columns' must be ${dim} distinct non-empty strings`);
    }
    columns = c as string[];
  }
  return { path, dim, columns, logProb: mod.logProb as Target['logProb'] };
}

/** Calls the user's logProb and checks what comes back. */
export function evalTarget(target: Target, x: Tensor, tf: Tf): Tensor {
  let out: unknown;
  try {
    out = target.logProb(x, tf);
  } catch (err) {
    throw new UserError(`${target.path}: logProb threw: ${(err as Error).message.split('\n')[0]}`);
  }
  const t = out as Tensor;
  if (!t || typeof t !== 'object' || !Array.isArray(t.shape)) throw new UserError(`${target.path}: logProb must return a tensor`);
  const n = x.shape[0];
  if (t.shape.length === 2 && t.shape[1] === 1 && t.shape[0] === n) return tf.reshape(t, [n]);
  if (t.shape.length !== 1 || t.shape[0] !== n) {
    throw new UserError(`${target.path}: logProb returned shape [${t.shape.join(', ')}], expected [${n}]`);
  }
  return t;
}
