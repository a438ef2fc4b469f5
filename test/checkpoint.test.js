// Checkpoints: atomic writes and refusal of every kind of damaged or hostile checkpoint.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { cpSync, readFileSync, writeFileSync, existsSync, mkdirSync, readdirSync, truncateSync, rmSync, symlinkSync, lstatSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { example, runNf, tempDir } from './helpers.js';

const dir = tempDir('nf-ckpt-');
const good = join(dir, 'good');

before(async () => {
  const r = await runNf(['fit', example('moons.csv'), '-m', good, '--epochs', '1', '--seed', '2', '-q']);
  assert.equal(r.code, 0, r.stderr);
});

/** Copies the good checkpoint, applies `damage`, and checks `nf sample` refuses it cleanly. */
async function refused(name, damage, pattern, timeout) {
  const bad = join(dir, name);
  cpSync(good, bad, { recursive: true });
  damage(bad);
  const r = await runNf(['sample', '-m', bad, '-n', '3'], { timeout });
  assert.equal(r.code, 1, `${name}: ${r.stderr}`);
  assert.equal(r.stdout, '', `${name}: nothing on stdout`);
  assert.equal(r.stderr.trim().split('\n').length, 1, `${name}: one line: ${r.stderr}`);
  assert.match(r.stderr, pattern, name);
}

const editJson = (f) => (d) => {
  const p = join(d, 'model.json');
  const m = JSON.parse(readFileSync(p, 'utf8'));
  f(m);
  writeFileSync(p, JSON.stringify(m));
};

test('missing directory', async () => {
  const r = await runNf(['sample', '-m', join(dir, 'absent')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /no model here/);
});

test('damaged checkpoints are refused with one clear line', async () => {
  await refused('no-weights', (d) => writeFileSync(join(d, 'weights.bin'), '') || truncateSync(join(d, 'weights.bin'), 0), /bytes, expected/);
  await refused('missing-weights', (d) => cpSync(join(d, 'model.json'), join(d, 'm.json')) || writeFileSync(join(d, 'weights.bin'), Buffer.alloc(0)), /bytes, expected/);
  await refused('truncated', (d) => truncateSync(join(d, 'weights.bin'), 1000), /1000 bytes, expected/);
  await refused('not-json', (d) => writeFileSync(join(d, 'model.json'), '{"format": "nf-flow", '), /not valid JSON/);
  await refused('version', editJson((m) => (m.version = 99)), /version 99 is not supported/);
  await refused('format', editJson((m) => (m.format = 'keras')), /not an nf checkpoint/);
  await refused('shape', editJson((m) => (m.weightsManifest[0].weights[0].shape = [5, 5])), /weight 0 is .*\[5,5\], expected/);
  await refused('dim', editJson((m) => (m.flow.dim = 3)), /column names for a 3-dimensional flow|permutation/);
  await refused('traversal', editJson((m) => (m.weightsManifest[0].paths = ['../../etc/passwd'])), /not a plain file name inside the checkpoint/);
  await refused('absolute', editJson((m) => (m.weightsManifest[0].paths = ['/etc/passwd'])), /not a plain file name/);
  // exp(s) per layer with s up to the bound: 1e308 made sample print nan with exit 0.
  await refused('scale-bound', editJson((m) => (m.flow.scaleBound = 1e308)), /flow.scaleBound/);
  await refused('std-zero', editJson((m) => (m.standardization.std[0] = 0)), /standardization.std/);
  await refused('nan-weights', (d) => {
    const p = join(d, 'weights.bin');
    const b = readFileSync(p);
    b.writeFloatLE(Number.NaN, 40);
    writeFileSync(p, b);
  }, /not finite/);
  await refused('dtype', editJson((m) => (m.weightsManifest[0].weights[3].dtype = 'int32')), /dtype "int32"/);
  await refused('missing-file', (d) => writeFileSync(join(d, 'model.json'), readFileSync(join(d, 'model.json'), 'utf8').replace('"weights.bin"', '"other.bin"')), /missing weights file/);
});

test('fit refuses to overwrite a directory that is not a checkpoint, and leaves it alone', async () => {
  const other = join(dir, 'precious');
  mkdirSync(other);
  writeFileSync(join(other, 'notes.txt'), 'keep me');
  const r = await runNf(['fit', example('moons.csv'), '-m', other, '--epochs', '1']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /not an nf checkpoint; refusing to overwrite/);
  assert.deepEqual(readdirSync(other), ['notes.txt']);
});

test('a failed fit leaves the previous checkpoint intact and no temporary directories', async () => {
  const keep = join(dir, 'keep');
  cpSync(good, keep, { recursive: true });
  const before = readFileSync(join(keep, 'weights.bin'));
  const r = await runNf(['fit', '-m', keep, '--epochs', '1'], { input: 'a,b\n1,2\n3,x\n' });
  assert.equal(r.code, 1);
  assert.deepEqual(readFileSync(join(keep, 'weights.bin')), before);
  assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('.')), []);
  // A successful refit replaces it atomically: no leftovers either.
  const ok = await runNf(['fit', example('moons.csv'), '-m', keep, '--epochs', '1', '-q']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.notDeepEqual(readFileSync(join(keep, 'weights.bin')), before);
  assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('.')), []);
  assert.ok(existsSync(join(keep, 'model.json')));
});

test('more damage: JSON that is not an object, duplicate columns, extra bytes, a file or directory in the wrong place', async () => {
  await refused('array', (d) => writeFileSync(join(d, 'model.json'), '[1, 2, 3]'), /model\.json: model\.json must be an object/);
  await refused('null', (d) => writeFileSync(join(d, 'model.json'), 'null'), /model\.json must be an object/);
  await refused('dup-columns', editJson((m) => (m.columns = ['x1', 'x1'])), /column name "x1" appears twice/);
  await refused('empty-column', editJson((m) => (m.columns = ['', 'x2'])), /columns\[0\] is an empty name/);
  await refused('no-training', editJson((m) => delete m.training), /training must be an object/);
  await refused('training-epochs', editJson((m) => (m.training.epochs = 'lots')), /training\.epochs is missing or invalid/);
  await refused('training-history', editJson((m) => (m.training.history = 5)), /training\.history must be an array/);
  await refused('training-restarts', editJson((m) => (m.training.restarts = [null])), /training\.restarts\[0\] must be an object/);
  await refused('long-weights', (d) => writeFileSync(join(d, 'weights.bin'), Buffer.concat([readFileSync(join(d, 'weights.bin')), Buffer.alloc(8)])), /bytes, expected .* \(truncated or mismatched\)/);
  await refused('weights-dir', (d) => rmSync(join(d, 'weights.bin')) || mkdirSync(join(d, 'weights.bin')), /weights\.bin: not a regular file \(refused\)/);
  const file = join(dir, 'a-file');
  writeFileSync(file, 'x');
  const r = await runNf(['sample', '-m', file]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^nf: error: .*a-file: not a checkpoint directory\n$/);
});

test('unknown extra fields in model.json are fine', async () => {
  const extra = join(dir, 'extra');
  cpSync(good, extra, { recursive: true });
  editJson((m) => {
    m.comment = 'added by hand';
    m.flow.note = { nested: [1, 2] };
    m.training.extra = true;
  })(extra);
  const r = await runNf(['sample', '-m', extra, '-n', '3', '--seed', '1']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim().split('\n').length, 4);
});

test('non-finite weights are never saved: refused with "training diverged", nothing written', async () => {
  const { saveCheckpoint, loadCheckpoint } = await import('../dist/checkpoint.js');
  const { meta, params } = await loadCheckpoint(good);
  const target = join(dir, 'never');
  const bad = Float32Array.from(params);
  bad[7] = Number.NaN;
  await assert.rejects(saveCheckpoint(target, meta, bad), (e) => e.name === 'UserError' && /training diverged: weight 7 is not finite; nothing saved/.test(e.message));
  assert.ok(!existsSync(target));
  // Over an existing checkpoint: it stays as it was.
  const keep = join(dir, 'keep-nan');
  cpSync(good, keep, { recursive: true });
  const before = readFileSync(join(keep, 'weights.bin'));
  bad[7] = Number.POSITIVE_INFINITY;
  await assert.rejects(saveCheckpoint(keep, meta, bad), /not finite/);
  assert.deepEqual(readFileSync(join(keep, 'weights.bin')), before);
});

test('refitting through a symbolic link replaces the checkpoint it points to, not the link', async () => {
  const real = join(dir, 'real-model');
  cpSync(good, real, { recursive: true });
  const link = join(dir, 'link-model');
  symlinkSync(real, link);
  const before = readFileSync(join(real, 'weights.bin'));
  const r = await runNf(['fit', example('moons.csv'), '-m', link, '--epochs', '1', '--seed', '9', '-q']);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(lstatSync(link).isSymbolicLink(), 'still a link');
  assert.notDeepEqual(readFileSync(join(real, 'weights.bin')), before, 'the target was replaced');
  assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('.')), []);
});

test('weight files must be regular files inside the checkpoint: a FIFO is refused, not waited on; a link out is refused', async () => {
  // Reading a FIFO would block for ever: without the check nf is killed after 20 s and the test fails.
  await refused('fifo', (d) => {
    rmSync(join(d, 'weights.bin'));
    assert.equal(spawnSync('mkfifo', [join(d, 'weights.bin')]).status, 0);
  }, /weights\.bin: not a regular file \(refused\)/, 20000);
  // A link to a copy of the right weights outside the directory: the bytes would pass every other check.
  const outside = join(dir, 'outside.bin');
  cpSync(join(good, 'weights.bin'), outside);
  await refused('link-out', (d) => rmSync(join(d, 'weights.bin')) || symlinkSync(outside, join(d, 'weights.bin')), /weights\.bin: leads outside the checkpoint directory/);
  await refused('json-fifo', (d) => {
    rmSync(join(d, 'model.json'));
    assert.equal(spawnSync('mkfifo', [join(d, 'model.json')]).status, 0);
  }, /model\.json: not a regular file/, 20000);
  // A link that stays inside is fine.
  const inside = join(dir, 'link-in');
  cpSync(good, inside, { recursive: true });
  cpSync(join(inside, 'weights.bin'), join(inside, 'w-real.bin'));
  rmSync(join(inside, 'weights.bin'));
  symlinkSync('w-real.bin', join(inside, 'weights.bin'));
  const r = await runNf(['sample', '-m', inside, '-n', '2', '--seed', '1']);
  assert.equal(r.code, 0, r.stderr);
});

test('a byte-order mark in model.json (some editors add one) is accepted', async () => {
  const bom = join(dir, 'bom');
  cpSync(good, bom, { recursive: true });
  const p = join(bom, 'model.json');
  writeFileSync(p, '\uFEFF' + readFileSync(p, 'utf8'));
  const r = await runNf(['sample', '-m', bom, '-n', '2', '--seed', '1']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim().split('\n').length, 3);
});

test('a checkpoint left under a hidden name by a save killed between its renames is pointed out', async () => {
  const parent = tempDir('nf-ckpt-left-');
  cpSync(good, join(parent, '.mine.old-123-abcd'), { recursive: true });
  const r = await runNf(['sample', '-m', join(parent, 'mine')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^nf: error: .*mine: no model here .*an interrupted save left a checkpoint at .*\.mine\.old-123-abcd: rename it to .*mine to use it\n$/);
  // With the new checkpoint left as well, that one (the model just trained) is offered.
  cpSync(good, join(parent, '.mine.tmp-123-abcd'), { recursive: true });
  const both = await runNf(['sample', '-m', join(parent, 'mine')]);
  assert.match(both.stderr, /left a checkpoint at .*\.mine\.tmp-123-abcd: rename/);
});
