// Reverse-KL fits to a density known up to a constant (nf fit --target).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { example, runNf, tempDir, parseCsv, mean } from './helpers.js';
import { Rng } from '../dist/rng.js';

const dir = tempDir('nf-target-');
const banana = example('targets/banana.mjs');
const { logZ: trueLogZ } = await import(banana);

test('banana target: log Z estimate matches the exact normaliser; the checkpoint is an ordinary model', async () => {
  const m = join(dir, 'banana');
  const r = await runNf(['fit', '--target', banana, '-m', m, '--steps', '300', '--seed', '1', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assert.ok(Math.abs(s.logZ - trueLogZ) < 0.05, `log Z ${s.logZ} ± ${s.logZStderr} vs exact ${trueLogZ}`);
  assert.ok(s.logZStderr > 0 && s.logZStderr < 0.05);
  assert.ok(s.essFraction > 0.5 && s.essFraction <= 1, `ESS fraction ${s.essFraction}`);
  assert.match(r.stderr, /log Z ≈ .* ESS/);

  // Exact draws from the banana, scored by the fitted flow: close to the true mean log density.
  const rng = new Rng(3);
  const rows = [];
  const truth = [];
  for (let i = 0; i < 2000; i++) {
    const x1 = 2 * rng.normal();
    const e = rng.normal();
    rows.push([x1, 0.25 * x1 * x1 - 1 + 0.5 * e]);
    truth.push(-0.5 * ((x1 / 2) ** 2 + e * e) - trueLogZ);
  }
  writeFileSync(join(dir, 'banana.csv'), 'x1,x2\n' + rows.map((r) => r.join(',')).join('\n') + '\n');
  const ev = await runNf(['eval', join(dir, 'banana.csv'), '-m', m, '--json']);
  assert.equal(ev.code, 0, ev.stderr);
  const got = JSON.parse(ev.stdout).meanLogLik;
  assert.ok(Math.abs(got - mean(truth)) < 0.1, `flow LL ${got} vs true ${mean(truth)}`);
  // Draws from the saved model: the banana has mean (0, 0) and covariance diag(4, 2.25)
  // (Var x2 = 0.25²·Var(x1²) + 0.5² = 0.0625·32 + 0.25); checked within ~4 standard errors.
  const n = 5000;
  const smp = await runNf(['sample', '-m', m, '-n', String(n), '--seed', '4']);
  assert.equal(smp.code, 0, smp.stderr);
  const xs = parseCsv(smp.stdout).rows;
  assert.equal(xs.length, n);
  const m1 = mean(xs.map((r) => r[0]));
  const m2 = mean(xs.map((r) => r[1]));
  const v1 = mean(xs.map((r) => (r[0] - m1) ** 2));
  const v2 = mean(xs.map((r) => (r[1] - m2) ** 2));
  const c12 = mean(xs.map((r) => (r[0] - m1) * (r[1] - m2)));
  assert.ok(Math.abs(m1) < 4 * Math.sqrt(4 / n), `mean x1 ${m1}`);
  assert.ok(Math.abs(m2) < 4 * Math.sqrt(2.25 / n), `mean x2 ${m2}`);
  assert.ok(Math.abs(v1 - 4) < 4 * 4 * Math.sqrt(2 / n), `var x1 ${v1}`);
  assert.ok(Math.abs(v2 - 2.25) < 0.35, `var x2 ${v2}`);
  assert.ok(Math.abs(c12) < 0.25, `cov ${c12}`);
});

test('bad target modules are refused with one line', async () => {
  const bad = join(dir, 'bad.mjs');
  writeFileSync(bad, 'export const dim = 1;\nexport function logProb(x) { return x; }\n');
  const r = await runNf(['fit', '--target', bad, '-m', join(dir, 'x')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /must export 'dim', an integer ≥ 2/);
  const shape = join(dir, 'shape.mjs');
  writeFileSync(shape, 'export const dim = 2;\nexport function logProb(x, tf) { return tf.sum(x); }\n');
  const s = await runNf(['fit', '--target', shape, '-m', join(dir, 'y'), '--steps', '5']);
  assert.equal(s.code, 1);
  assert.match(s.stderr, /logProb returned shape \[\], expected \[256\]/);
  const both = await runNf(['fit', example('moons.csv'), '--target', banana]);
  assert.equal(both.code, 2);
  const missing = await runNf(['fit', '--target', join(dir, 'nope.mjs')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no such target module/);
});
