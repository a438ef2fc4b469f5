/**
 * Checkpoint directory: model.json (configuration, columns, standardisation, training
 * summary, tfjs-style weightsManifest) and weights.bin (little-endian float32, in
 * manifest order). Written atomically; everything is validated on load and nothing in a
 * checkpoint is ever executed.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, readdir, realpath, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, resolve, sep } from 'node:path';
import { ioMessage, UserError } from './errors.js';
import { FLOW_TYPES, paramLayout, type FlowSpec } from './flow/spec.js';
import type { Standardization } from './flow/flow.js';

export const FORMAT = 'nf-flow';
/**
 * Version 2 adds the mixture base (flow.mixture and its weights). A checkpoint without one
 * is still written as version 1, so older nf reads it; given a version 2 one, older nf
 * says it is too new instead of miscounting weights.
 */
export const VERSION = 2;
const versionFor = (flow: FlowSpec): number => (flow.mixture ? 2 : 1);
const WEIGHTS_FILE = 'weights.bin';

export interface TrainingSummary {
  epochs: number;
  bestEpoch: number;
  /** Best validation NLL per row, nats, original units. */
  bestValNll: number;
  trainRows: number;
  valRows: number;
  droppedRows: number;
  backend: string;
  seconds: number;
  samplesPerSecond: number;
  stopReason: string;
  seed: number;
  batchSize: number;
  lr: number;
  /** Decay of the weight average that was validated and saved (absent: raw weights). */
  emaDecay?: number;
  /** Decoupled weight decay per unit learning rate (absent: none, or written before it existed). */
  weightDecay?: number;
  patience: number;
  valSplit: number;
  dequantize: boolean;
  source: string;
  createdAt: string;
  history: { epoch: number; trainNll: number; valNll: number }[];
  /** Every restart's outcome (absent in checkpoints from before restarts). */
  restarts?: {
    seed: number;
    components?: number;
    /** Scale of the random last layers it started from (0 or absent: the identity). */
    lastLayerScale?: number;
    bestValNll: number;
    epochs: number;
    bestEpoch: number;
    stopReason: string;
  }[];
  /** Index into `restarts` of the saved one; `history` and the figures above are its. */
  chosenRestart?: number;
}

export interface WeightsGroup {
  paths: string[];
  weights: { name: string; shape: number[]; dtype: 'float32' }[];
}

export interface ModelMeta {
  format: typeof FORMAT;
  version: number;
  flow: FlowSpec;
  columns: string[];
  standardization: Standardization;
  training: TrainingSummary;
  weightsManifest: WeightsGroup[];
}

export interface Checkpoint {
  meta: ModelMeta;
  params: Float32Array;
}

export function defaultModelDir(): string {
  const env = process.env.NF_MODEL;
  return env && env.trim() !== '' ? env : 'nf-model';
}

export function manifestFor(spec: FlowSpec): WeightsGroup[] {
  return [{ paths: [WEIGHTS_FILE], weights: paramLayout(spec).map((e) => ({ name: e.name, shape: e.shape, dtype: 'float32' })) }];
}

function encode(params: Float32Array): Buffer {
  const buf = Buffer.alloc(params.length * 4);
  for (let i = 0; i < params.length; i++) buf.writeFloatLE(params[i], i * 4);
  return buf;
}

async function writeDurably(path: string, data: string | Buffer): Promise<void> {
  const fh = await open(path, 'w');
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}


/** The nearest existing ancestor of `path` (which does not exist itself). */
async function nearestExisting(path: string): Promise<{ path: string; isDirectory: boolean }> {
  let p = dirname(path);
  for (;;) {
    const s = await stat(p).catch(() => null);
    if (s) return { path: p, isDirectory: s.isDirectory() };
    const up = dirname(p);
    if (up === p) return { path: p, isDirectory: true };
    p = up;
  }
}

/**
 * Checks that a checkpoint can be written at `dir` without writing anything there:
 * `fit` calls this before training so a bad path fails in seconds, not after an hour.
 * Returns whether a checkpoint (or an empty directory) exists there already.
 */
export async function checkCheckpointTarget(dir: string): Promise<boolean> {
  const target = resolve(dir);
  let existing: Awaited<ReturnType<typeof stat>> | null = null;
  try {
    existing = await stat(target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new UserError(`${dir}: cannot write a checkpoint there: ${ioMessage(err)}`);
  }
  if (existing) {
    if (!existing.isDirectory()) throw new UserError(`${dir}: exists and is not a directory; choose another --model path`);
    const entries = await readdir(target).catch((err: unknown) => {
      throw new UserError(`${dir}: cannot write a checkpoint there: ${ioMessage(err)}`);
    });
    if (entries.length > 0 && !entries.includes('model.json')) {
      throw new UserError(`${dir}: exists and is not an nf checkpoint; refusing to overwrite it (choose another --model path)`);
    }
  }
  // Where the temporary directory will go: the parent, or the nearest ancestor that exists.
  const base = existing ? { path: dirname(target), isDirectory: true } : await nearestExisting(target);
  if (!base.isDirectory) throw new UserError(`${dir}: cannot write a checkpoint there: ${base.path} is a file, not a directory`);
  try {
    const probe = await mkdtemp(join(base.path, '.nf-write-check-'));
    await rm(probe, { recursive: true, force: true });
  } catch (err) {
    throw new UserError(`${dir}: cannot write a checkpoint there: cannot create files in ${base.path} (${ioMessage(err)})`);
  }
  return existing !== null;
}

/**
 * Writes a checkpoint atomically: into a fresh sibling directory, then swapped into place.
 * An existing directory is replaced only if it is an nf checkpoint (or empty).
 */
export async function saveCheckpoint(dir: string, meta: Omit<ModelMeta, 'weightsManifest' | 'format' | 'version'>, params: Float32Array): Promise<void> {
  for (let i = 0; i < params.length; i++) {
    if (!Number.isFinite(params[i])) {
      throw new UserError(`training diverged: weight ${i} is not finite; nothing saved (any previous checkpoint at ${dir} is unchanged)`);
    }
  }
  const existing = await checkCheckpointTarget(dir);
  // Through a symbolic link, replace the directory it points to, not the link.
  const target = existing ? await realpath(dir) : resolve(dir);
  const parent = dirname(target);
  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const tmp = join(parent, `.${basename(target)}.tmp-${tag}`);
  const old = join(parent, `.${basename(target)}.old-${tag}`);
  const full: ModelMeta = { format: FORMAT, version: versionFor(meta.flow), ...meta, weightsManifest: manifestFor(meta.flow) };
  try {
    await mkdir(parent, { recursive: true });
    await mkdir(tmp);
    await writeDurably(join(tmp, WEIGHTS_FILE), encode(params));
    await writeDurably(join(tmp, 'model.json'), JSON.stringify(full, null, 1) + '\n');
  } catch (err) {
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    throw new UserError(`${dir}: cannot write checkpoint: ${ioMessage(err)} (any previous checkpoint there is unchanged)`);
  }
  try {
    if (existing) await rename(target, old);
    await rename(tmp, target);
  } catch (err) {
    // Put the previous checkpoint back if it was moved aside.
    if (existing) await rename(old, target).catch(() => undefined);
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    throw new UserError(`${dir}: cannot write checkpoint: ${ioMessage(err)} (any previous checkpoint there is unchanged)`);
  }
  if (existing) await rm(old, { recursive: true, force: true }).catch(() => undefined);
}

// ---------------------------------------------------------------- loading & validation

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

class Invalid extends Error {}

function obj(v: Json | undefined, what: string): { [k: string]: Json } {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Invalid(`${what} must be an object`);
  return v;
}
function num(v: Json | undefined, what: string, check: (n: number) => boolean = Number.isFinite): number {
  if (typeof v !== 'number' || !check(v)) throw new Invalid(`${what} is missing or invalid`);
  return v;
}
function int(v: Json | undefined, what: string, min: number, max: number): number {
  return num(v, what, (n) => Number.isInteger(n) && n >= min && n <= max);
}
function arr(v: Json | undefined, what: string): Json[] {
  if (!Array.isArray(v)) throw new Invalid(`${what} must be an array`);
  return v;
}
function str(v: Json | undefined, what: string): string {
  if (typeof v !== 'string') throw new Invalid(`${what} must be a string`);
  return v;
}

function validateSpec(v: Json | undefined): FlowSpec {
  const f = obj(v, 'flow');
  const type = str(f.type, 'flow.type');
  if (!(FLOW_TYPES as readonly string[]).includes(type)) throw new Invalid(`flow.type '${type}' is not one of ${FLOW_TYPES.join(', ')}`);
  const dim = int(f.dim, 'flow.dim', 2, 100000);
  const layers = int(f.layers, 'flow.layers', 1, 1000);
  const hidden = int(f.hidden, 'flow.hidden', 1, 1 << 16);
  const hiddenLayers = int(f.hiddenLayers, 'flow.hiddenLayers', 1, 64);
  // nf writes 2; far above it exp(s) overflows float32 within a few layers.
  const scaleBound = num(f.scaleBound, 'flow.scaleBound', (n) => n > 0 && n <= 20);
  const perms = arr(f.permutations, 'flow.permutations');
  if (perms.length !== layers) throw new Invalid(`flow.permutations has ${perms.length} entries for ${layers} layers`);
  const permutations = perms.map((p, l) => {
    const a = arr(p, `flow.permutations[${l}]`).map((x) => int(x, `flow.permutations[${l}]`, 0, dim - 1));
    if (a.length !== dim || new Set(a).size !== dim) throw new Invalid(`flow.permutations[${l}] is not a permutation of ${dim} indices`);
    return a;
  });
  if (f.diagScale !== undefined && typeof f.diagScale !== 'boolean') throw new Invalid('flow.diagScale must be true or false');
  const spec: FlowSpec = { type: type as FlowSpec['type'], dim, layers, hidden, hiddenLayers, scaleBound, permutations };
  if (f.diagScale === true) spec.diagScale = true;
  if (f.mixture !== undefined) spec.mixture = int(f.mixture, 'flow.mixture', 1, 1024);
  return spec;
}

/** A JSON number, or null where a float NaN was written (e.g. a --target fit has no validation NLL). */
function numOrNull(v: Json | undefined, what: string): void {
  if (v !== null) num(v, what);
}
const count = (v: Json | undefined, what: string): void => void int(v, what, 0, Number.MAX_SAFE_INTEGER);

/**
 * The training summary: the fields every checkpoint has are required, the later ones are
 * checked when present. Only their types: `info` prints them, nothing computes with them.
 */
function validateTraining(v: Json | undefined): TrainingSummary {
  const t = obj(v, 'training');
  for (const k of ['epochs', 'bestEpoch', 'trainRows', 'valRows']) count(t[k], `training.${k}`);
  numOrNull(t.bestValNll, 'training.bestValNll');
  num(t.seconds, 'training.seconds', (n) => Number.isFinite(n) && n >= 0);
  str(t.backend, 'training.backend');
  const optional: [string, (x: Json | undefined, what: string) => void][] = [
    ['droppedRows', count], ['seed', count], ['batchSize', count], ['patience', count],
    ['samplesPerSecond', num], ['lr', num], ['valSplit', num], ['emaDecay', num], ['weightDecay', num],
    ['stopReason', str], ['source', str], ['createdAt', str],
    ['dequantize', (x, what) => { if (typeof x !== 'boolean') throw new Invalid(`${what} must be true or false`); }],
  ];
  for (const [k, check] of optional) if (t[k] !== undefined) check(t[k], `training.${k}`);
  if (t.history !== undefined) {
    arr(t.history, 'training.history').forEach((h, i) => {
      const e = obj(h, `training.history[${i}]`);
      count(e.epoch, `training.history[${i}].epoch`);
      numOrNull(e.trainNll, `training.history[${i}].trainNll`);
      numOrNull(e.valNll, `training.history[${i}].valNll`);
    });
  }
  if (t.restarts !== undefined) {
    const restarts = arr(t.restarts, 'training.restarts');
    restarts.forEach((r, i) => {
      const e = obj(r, `training.restarts[${i}]`);
      for (const k of ['seed', 'epochs', 'bestEpoch']) count(e[k], `training.restarts[${i}].${k}`);
      if (e.components !== undefined) count(e.components, `training.restarts[${i}].components`);
      if (e.lastLayerScale !== undefined) num(e.lastLayerScale, `training.restarts[${i}].lastLayerScale`);
      numOrNull(e.bestValNll, `training.restarts[${i}].bestValNll`);
      str(e.stopReason, `training.restarts[${i}].stopReason`);
    });
    if (t.chosenRestart !== undefined) int(t.chosenRestart, 'training.chosenRestart', 0, restarts.length - 1);
  }
  if (t.logprobQuantiles !== undefined) arr(t.logprobQuantiles, 'training.logprobQuantiles').forEach((q) => num(q, 'training.logprobQuantiles'));
  return t as unknown as TrainingSummary;
}

function validateMeta(raw: Json): ModelMeta {
  const m = obj(raw, 'model.json');
  if (m.format !== FORMAT) throw new Invalid(`not an nf checkpoint (format is ${JSON.stringify(m.format ?? null)}, expected "${FORMAT}")`);
  const version = int(m.version, 'version', 0, Number.MAX_SAFE_INTEGER);
  if (version < 1 || version > VERSION) throw new Invalid(`checkpoint format version ${version} is not supported (this nf reads versions 1 to ${VERSION})`);
  const flow = validateSpec(m.flow);
  if (versionFor(flow) > version) throw new Invalid(`flow.mixture needs checkpoint format version ${versionFor(flow)}, the file says ${version}`);
  const columns = arr(m.columns, 'columns').map((c, i) => str(c, `columns[${i}]`));
  if (columns.length !== flow.dim) throw new Invalid(`${columns.length} column names for a ${flow.dim}-dimensional flow`);
  // As the CSV reader demands of a header: logprob could never match an empty name.
  const empty = columns.indexOf('');
  if (empty >= 0) throw new Invalid(`columns[${empty}] is an empty name`);
  const dup = columns.find((c, i) => columns.indexOf(c) !== i);
  if (dup !== undefined) throw new Invalid(`column name ${JSON.stringify(dup)} appears twice`);
  const st = obj(m.standardization, 'standardization');
  const mean = arr(st.mean, 'standardization.mean').map((x) => num(x, 'standardization.mean'));
  const std = arr(st.std, 'standardization.std').map((x) => num(x, 'standardization.std', (n) => Number.isFinite(n) && n > 0));
  if (mean.length !== flow.dim || std.length !== flow.dim) throw new Invalid('standardization does not match the flow dimension');
  const training = validateTraining(m.training);
  const manifest = arr(m.weightsManifest, 'weightsManifest').map((g, gi) => {
    const go = obj(g, `weightsManifest[${gi}]`);
    return {
      paths: arr(go.paths, `weightsManifest[${gi}].paths`).map((p) => str(p, 'weightsManifest path')),
      weights: arr(go.weights, `weightsManifest[${gi}].weights`).map((w) => {
        const wo = obj(w, 'weightsManifest weight');
        if (wo.dtype !== 'float32') throw new Invalid(`weight ${JSON.stringify(wo.name)} has dtype ${JSON.stringify(wo.dtype)}, expected float32`);
        return {
          name: str(wo.name, 'weight name'),
          shape: arr(wo.shape, 'weight shape').map((d) => int(d, 'weight shape', 0, 1 << 30)),
          dtype: 'float32' as const,
        };
      }),
    };
  });
  // The weights must be exactly the ones this architecture needs, in order.
  const expected = paramLayout(flow);
  const got = manifest.flatMap((g) => g.weights);
  if (got.length !== expected.length) throw new Invalid(`weightsManifest lists ${got.length} weights, the flow needs ${expected.length}`);
  got.forEach((w, i) => {
    const e = expected[i];
    if (w.name !== e.name || w.shape.length !== e.shape.length || w.shape.some((d, k) => d !== e.shape[k])) {
      throw new Invalid(`weight ${i} is ${w.name} [${w.shape.join(',')}], expected ${e.name} [${e.shape.join(',')}]`);
    }
  });
  return { format: FORMAT, version, flow, columns, standardization: { mean, std }, training, weightsManifest: manifest };
}

/** Resolves a manifest path, refusing anything that would leave the checkpoint directory. */
function safePath(dir: string, p: string): string {
  if (p === '' || isAbsolute(p) || p.includes('\\') || p.split('/').some((s) => s === '..' || s === '')) {
    throw new Invalid(`weightsManifest path ${JSON.stringify(p)} is not a plain file name inside the checkpoint`);
  }
  const full = resolve(dir, p);
  if (!full.startsWith(resolve(dir) + sep)) throw new Invalid(`weightsManifest path ${JSON.stringify(p)} leaves the checkpoint directory`);
  return full;
}

/**
 * A hint for a missing checkpoint directory: a save killed between its two renames (power
 * loss, SIGKILL) leaves the new checkpoint (tmp) and the previous one (old) under hidden
 * sibling names. Both are complete (model.json is written last); the new one is offered first.
 */
async function leftoverHint(dir: string): Promise<string> {
  const target = resolve(dir);
  const prefix = `.${basename(target)}.`;
  const names = await readdir(dirname(target)).catch(() => [] as string[]);
  for (const kind of ['tmp', 'old']) {
    for (const name of names.filter((n) => n.startsWith(`${prefix}${kind}-`)).sort()) {
      const p = join(dirname(target), name);
      if (await regularFile(join(p, 'model.json'))) return `; an interrupted save left a checkpoint at ${p}: rename it to ${dir} to use it`;
    }
  }
  return '';
}

async function regularFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => null))?.isFile() ?? false;
}

/**
 * Checks a checkpoint file before it is read: it must be a regular file (reading a FIFO
 * would block, a device never end) whose real location is inside the checkpoint's real
 * directory. `missing` is the whole message if it does not exist.
 */
async function checkpointFile(realDir: string, path: string, missing: string): Promise<void> {
  const real = await realpath(path).catch((err: NodeJS.ErrnoException) => {
    throw new UserError(err.code === 'ENOENT' ? missing : `${path}: cannot read: ${ioMessage(err)}`);
  });
  if (!real.startsWith(realDir + sep)) throw new UserError(`${path}: leads outside the checkpoint directory (refused)`);
  if (!(await regularFile(real))) throw new UserError(`${path}: not a regular file (refused)`);
}

export async function loadCheckpoint(dir: string): Promise<Checkpoint> {
  const where = `${dir}`;
  const s = await stat(dir).catch(() => null);
  if (!s) throw new UserError(`${where}: no model here (train one with 'nf fit data.csv', or pass -m <dir>)${await leftoverHint(dir)}`);
  if (!s.isDirectory()) throw new UserError(`${where}: not a checkpoint directory`);
  const realDir = await realpath(dir);
  const jsonPath = join(dir, 'model.json');
  await checkpointFile(realDir, jsonPath, `${where}: no model.json (not an nf checkpoint)`);
  let text: string;
  try {
    // A byte-order mark (some editors add one) is not part of the JSON.
    text = (await readFile(jsonPath, 'utf8')).replace(/^\uFEFF/, '');
  } catch (err) {
    throw new UserError(`${jsonPath}: cannot read: ${ioMessage(err)}`);
  }
  let parsed: Json;
  try {
    parsed = JSON.parse(text) as Json;
  } catch (err) {
    throw new UserError(`${join(dir, 'model.json')}: not valid JSON (${(err as Error).message})`);
  }
  let meta: ModelMeta;
  try {
    meta = validateMeta(parsed);
  } catch (err) {
    if (err instanceof Invalid) throw new UserError(`${join(dir, 'model.json')}: ${err.message}`);
    throw err;
  }
  const expectedFloats = paramLayout(meta.flow).reduce((a, e) => a + e.size, 0);
  const params = new Float32Array(expectedFloats);
  let offset = 0;
  for (const group of meta.weightsManifest) {
    const floats = group.weights.reduce((a, w) => a + w.shape.reduce((x, y) => x * y, 1), 0);
    const bytes: Buffer[] = [];
    for (const p of group.paths) {
      let path: string;
      try {
        path = safePath(dir, p);
      } catch (err) {
        throw new UserError(`${join(dir, 'model.json')}: ${(err as Error).message}`);
      }
      await checkpointFile(realDir, path, `${path}: missing weights file`);
      const b = await readFile(path).catch((err: unknown) => {
        throw new UserError(`${path}: cannot read: ${ioMessage(err)}`);
      });
      bytes.push(b);
    }
    const buf = Buffer.concat(bytes);
    if (buf.length !== floats * 4) {
      throw new UserError(`${join(dir, group.paths.join('+'))}: ${buf.length} bytes, expected ${floats * 4} for the weights listed in model.json (truncated or mismatched)`);
    }
    for (let i = 0; i < floats; i++) {
      const v = buf.readFloatLE(i * 4);
      if (!Number.isFinite(v)) throw new UserError(`${join(dir, group.paths[0])}: weight ${offset + i} is not finite (corrupt checkpoint)`);
      params[offset + i] = v;
    }
    offset += floats;
  }
  return { meta, params };
}
