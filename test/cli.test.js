// The real binary end to end: fit, sample, logprob, eval, info; streams and exit codes.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync, existsSync } from 'node:fs';
import { example, runNf, runShell, tempDir, parseCsv, mean } from './helpers.js';

const dir = tempDir();
const model = join(dir, 'model');

before(async () => {
  const r = await runNf(['fit', example('moons.csv'), '-m', model, '--epochs', '4', '--seed', '3', '--backend', 'wasm', '--json']);
  assert.equal(r.code, 0, r.stderr);
});

test('fit --json prints one JSON object on stdout and a summary on stderr', async () => {
  const r = await runNf(['fit', example('moons.csv'), '-m', join(dir, 'm2'), '--epochs', '2', '--seed', '1', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const summary = JSON.parse(r.stdout);
  assert.equal(summary.epochs, 2);
  assert.equal(summary.dim, 2);
  assert.deepEqual(summary.columns, ['x1', 'x2']);
  assert.ok(['tensorflow', 'wasm', 'cpu'].includes(summary.backend));
  assert.equal(summary.trainRows + summary.valRows, 3000);
  // Per-dimension figures carry eval's sign: a log-likelihood, not an NLL.
  assert.equal(summary.bestValLogLik, -summary.bestValNll);
  assert.ok(Math.abs(summary.valNatsPerDim - summary.bestValLogLik / 2) < 1e-12, `valNatsPerDim ${summary.valNatsPerDim}`);
  assert.match(r.stderr, new RegExp(`saved .*on ${summary.backend}`));
  assert.equal(r.stdout.trim().split('\n').length, 1);
});

test('fit keeps the restart with the best validation NLL; --json, the checkpoint and info say which', async () => {
  const m = join(dir, 'restarts');
  const r = await runNf(['fit', example('moons.csv'), '-m', m, '--epochs', '3', '--layers', '2', '--seed', '7', '--restarts', '3', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const summary = JSON.parse(r.stdout);
  assert.equal(summary.restarts, 3);
  assert.equal(summary.restartValNlls.length, 3);
  const best = Math.min(...summary.restartValNlls);
  assert.equal(summary.bestValNll, best);
  // An index into restartValNlls, as in model.json; people are shown it counted from 1.
  assert.equal(summary.chosenRestart, summary.restartValNlls.indexOf(best));
  assert.match(r.stderr, new RegExp(`restart ${summary.chosenRestart + 1} of 3\\)`));
  const meta = JSON.parse(readFileSync(join(m, 'model.json'), 'utf8'));
  assert.deepEqual(meta.training.restarts.map((o) => o.bestValNll), summary.restartValNlls);
  assert.equal(meta.training.chosenRestart, summary.chosenRestart);
  const info = await runNf(['info', '-m', m]);
  assert.match(info.stdout, new RegExp(`restarts\\s+3, kept #${summary.chosenRestart + 1}; val loglik -\\d`));
  // The same seed with one restart is restart 1 of this fit.
  const one = await runNf(['fit', example('moons.csv'), '-m', join(dir, 'one'), '--epochs', '3', '--layers', '2', '--seed', '7', '--restarts', '1', '--json']);
  assert.equal(one.code, 0, one.stderr);
  assert.equal(JSON.parse(one.stdout).bestValNll, summary.restartValNlls[0]);
});

test('checkpoint holds model.json with the contract fields and weights.bin of the right size', () => {
  const meta = JSON.parse(readFileSync(join(model, 'model.json'), 'utf8'));
  assert.equal(meta.format, 'nf-flow');
  // Version 2 only when the kept restart has a mixture base (older nf reads version 1).
  assert.equal(meta.version, meta.flow.mixture ? 2 : 1);
  assert.deepEqual(meta.columns, ['x1', 'x2']);
  assert.equal(meta.standardization.mean.length, 2);
  assert.equal(meta.training.backend, 'wasm');
  const weights = meta.weightsManifest[0].weights;
  const floats = weights.reduce((a, w) => a + w.shape.reduce((x, y) => x * y, 1), 0);
  assert.deepEqual(meta.weightsManifest[0].paths, ['weights.bin']);
  assert.equal(readFileSync(join(model, 'weights.bin')).length, floats * 4);
});

test('sample writes header + n rows of numbers to stdout, nothing on stderr', async () => {
  const r = await runNf(['sample', '-m', model, '-n', '50', '--seed', '7']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  const { header, rows } = parseCsv(r.stdout);
  assert.deepEqual(header, ['x1', 'x2']);
  assert.equal(rows.length, 50);
  assert.ok(rows.every((row) => row.length === 2 && row.every(Number.isFinite)));
  const again = await runNf(['sample', '-m', model, '-n', '50', '--seed', '7']);
  assert.equal(again.stdout, r.stdout, '--seed makes sampling reproducible');
  const noHeader = await runNf(['sample', '-m', model, '-n', '3', '--no-header', '--seed', '7']);
  assert.equal(noHeader.stdout.trim().split('\n').length, 3);
});

test('fit && sample | logprob through a real pipe: clean stdout, one logprob per row', async () => {
  const r = await runShell(`$NF sample -m '${model}' -n 100 --seed 1 | $NF logprob -m '${model}'`);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  const { header, rows } = parseCsv(r.stdout);
  assert.deepEqual(header, ['logprob']);
  assert.equal(rows.length, 100);
  assert.ok(rows.every(([v]) => Number.isFinite(v) && v < 5));
});

test('save → load gives identical logprob on repeated runs, matching eval', async () => {
  const a = await runNf(['logprob', example('moons-test.csv'), '-m', model]);
  const b = await runNf(['logprob', '-m', model], { input: readFileSync(example('moons-test.csv')) });
  assert.equal(a.code, 0, a.stderr);
  assert.equal(a.stdout, b.stdout, 'file and stdin give the same output');
  const lp = parseCsv(a.stdout).rows.map((r) => r[0]);
  assert.equal(lp.length, 1000);
  const ev = await runNf(['eval', example('moons-test.csv'), '-m', model, '--json']);
  assert.equal(ev.code, 0, ev.stderr);
  const e = JSON.parse(ev.stdout);
  assert.equal(e.rows, 1000);
  assert.ok(Math.abs(e.meanLogLik - mean(lp)) < 1e-4, `eval ${e.meanLogLik} vs mean logprob ${mean(lp)}`);
  assert.ok(Math.abs(e.natsPerDim - e.meanLogLik / 2) < 1e-9);
  assert.ok(Math.abs(e.bitsPerDim + e.meanLogLik / 2 / Math.LN2) < 1e-9);
  assert.ok(e.stderr > 0 && e.stderr < 0.1);
  const csv = await runNf(['eval', example('moons-test.csv'), '-m', model]);
  assert.match(csv.stdout, /^rows,dim,mean_loglik,stderr,nats_per_dim,bits_per_dim\n1000,2,/);
  // The CSV figures round-trip float32 (the contract), as every number nf writes does.
  const figures = csv.stdout.trim().split('\n')[1].split(',').slice(2).map(Number);
  [e.meanLogLik, e.stderr, e.natsPerDim, e.bitsPerDim].forEach((v, i) => assert.equal(Math.fround(figures[i]), Math.fround(v), `figure ${i}`));
});

test('the same checkpoint scores the same on the cpu backend as on wasm', async () => {
  const a = await runNf(['eval', example('moons-test.csv'), '-m', model, '--json', '--backend', 'wasm']);
  const b = await runNf(['eval', example('moons-test.csv'), '-m', model, '--json', '--backend', 'cpu']);
  assert.equal(b.code, 0, b.stderr);
  assert.ok(Math.abs(JSON.parse(a.stdout).meanLogLik - JSON.parse(b.stdout).meanLogLik) < 1e-4);
});

test('logprob matches columns by header name, ignores extras, --append keeps the input', async () => {
  const text = 'id,x2,x1\n7,0.5,0.25\n8,-0.1,1.5\n';
  const swapped = await runNf(['logprob', '-m', model, '--append'], { input: text });
  assert.equal(swapped.code, 0, swapped.stderr);
  const lines = swapped.stdout.trim().split('\n');
  assert.equal(lines[0], 'id,x2,x1,logprob');
  assert.match(lines[1], /^7,0.5,0.25,-?\d/);
  const direct = await runNf(['logprob', '-m', model, '--no-header'], { input: '0.25,0.5\n1.5,-0.1\n' });
  assert.deepEqual(direct.stdout.trim().split('\n').slice(1), lines.slice(1).map((l) => l.split(',')[3]));
});

test('sample -n 100000 | head -1 exits 0 quietly', async () => {
  const r = await runShell(`set -o pipefail; $NF sample -m '${model}' -n 100000 | head -1`);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'x1,x2\n');
  assert.equal(r.stderr, '');
});

test('large sample and logprob runs (helper thread on) print exactly what NF_THREADS=1 prints', async () => {
  // 40,000 rows = 5 chunks: past the point where a helper thread takes chunks.
  const args = ['sample', '-m', model, '-n', '40000', '--seed', '11'];
  const one = await runNf(args, { env: { NF_THREADS: '1' } });
  const two = await runNf(args, { env: { NF_THREADS: '2' } });
  assert.equal(one.code, 0, one.stderr);
  assert.equal(two.code, 0, two.stderr);
  assert.equal(two.stdout.split('\n').length, 40002);
  assert.ok(two.stdout === one.stdout, 'sample output differs with a helper thread');
  const lp1 = await runNf(['logprob', '-m', model, '-'], { input: one.stdout, env: { NF_THREADS: '1' } });
  const lp2 = await runNf(['logprob', '-m', model, '-'], { input: one.stdout, env: { NF_THREADS: '2' } });
  assert.equal(lp2.code, 0, lp2.stderr);
  assert.equal(lp2.stdout.split('\n').length, 40002);
  assert.ok(lp2.stdout === lp1.stdout, 'logprob output differs with a helper thread');
  const ev = await runNf(['eval', '-m', model, '--json', '-'], { input: one.stdout, env: { NF_THREADS: '2' } });
  const mean1 = mean(lp1.stdout.trim().split('\n').slice(1).map(Number));
  assert.ok(Math.abs(JSON.parse(ev.stdout).meanLogLik - mean1) < 1e-4, ev.stdout);
});

test('sample -o writes the file', async () => {
  const out = join(dir, 'samples.csv');
  const r = await runNf(['sample', '-m', model, '-n', '10', '-o', out]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, '');
  assert.equal(readFileSync(out, 'utf8').trim().split('\n').length, 11);
});

test('info describes the checkpoint; --json is machine-readable', async () => {
  const r = await runNf(['info', '-m', model]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /RealNVP/);
  assert.match(r.stdout, /backend\s+wasm/);
  const j = await runNf(['info', '-m', model, '--json']);
  const meta = JSON.parse(j.stdout);
  assert.equal(meta.flow.dim, 2);
  assert.equal(meta.training.backend, 'wasm');
  // --backend is a common option of every command that reads a model, info included.
  const cpu = await runNf(['info', '-m', model, '--backend', 'cpu']);
  assert.equal(cpu.code, 0, cpu.stderr);
  assert.equal(cpu.stdout, r.stdout);
  const bad = await runNf(['info', '-m', model, '--backend', 'gpu']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^nf: error: unknown backend 'gpu'/);
});

test('NF_MODEL sets the default model directory; ./nf-model otherwise', async () => {
  const r = await runNf(['sample', '-n', '2'], { env: { NF_MODEL: model } });
  assert.equal(r.code, 0, r.stderr);
  const cwd = tempDir();
  const fitted = await runNf(['fit', example('moons.csv'), '--epochs', '1', '-q'], { cwd });
  assert.equal(fitted.code, 0, fitted.stderr);
  assert.equal(fitted.stderr, '', '-q silences the summary');
  assert.ok(existsSync(join(cwd, 'nf-model', 'model.json')));
  const s = await runNf(['sample', '-n', '2'], { cwd });
  assert.equal(s.code, 0, s.stderr);
});

test('usage errors exit 2 with one line; user errors exit 1 with one line and no stack', async () => {
  for (const args of [
    ['sample', '-m', model, '-n', '0'],
    ['sample', '-m', model, '-n', '-3'],
    ['fit', example('moons.csv'), '--layers', '0'],
    ['fit', example('moons.csv'), '--lr', '-1'],
    ['fit', example('moons.csv'), '--val-split', '1.5'],
    ['fit', example('moons.csv'), '--flow', 'maf'],
    ['fit', example('moons.csv'), '--restarts', '0'],
    ['sample', '-m', model, '--bogus'],
  ]) {
    const r = await runNf(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /error/i);
    assert.equal(r.stdout, '');
  }
  const unknownBackend = await runNf(['sample', '-m', model, '--backend', 'gpu']);
  assert.equal(unknownBackend.code, 2, unknownBackend.stderr);
  for (const args of [
    ['sample', '-m', join(dir, 'nope')],
    ['logprob', join(dir, 'missing.csv'), '-m', model],
    ['eval', example('moons-test.csv'), '-m', join(dir, 'nope')],
  ]) {
    const r = await runNf(args);
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
    assert.equal(r.stdout, '');
  }
});

test('dimension mismatch in logprob names the missing columns', async () => {
  const r = await runNf(['logprob', '-m', model], { input: 'x1,y\n1,2\n' });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /missing column\(s\) 'x2'/);
  const n = await runNf(['logprob', '-m', model, '--no-header'], { input: '1,2,3\n' });
  assert.equal(n.code, 1);
  assert.match(n.stderr, /3 column\(s\) without a header, the model has 2/);
});

test('a bare nf and nf help <unknown> are usage errors of one line', async () => {
  const bare = await runNf([]);
  assert.equal(bare.code, 2);
  assert.match(bare.stderr, /^nf: error: no command given; one of fit, sample, logprob, eval, .*\(see --help\)\n$/);
  const h = await runNf(['help', 'bogus']);
  assert.equal(h.code, 2);
  assert.equal(h.stderr, "nf: error: unknown command 'bogus' (see --help)\n");
  const known = await runNf(['help', 'sample']);
  assert.equal(known.code, 0);
  assert.match(known.stdout, /Usage: nf sample/);
});

test('help and version exit 0', async () => {
  const h = await runNf(['--help']);
  assert.equal(h.code, 0);
  assert.match(h.stdout, /fit .*train a flow/);
  const fh = await runNf(['fit', '--help']);
  assert.match(fh.stdout, /--val-split/);
  const v = await runNf(['--version']);
  assert.equal(v.code, 0);
});

