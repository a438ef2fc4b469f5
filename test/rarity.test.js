// logprob --rarity: where a point's density falls among the training rows' densities.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import { example, runNf, tempDir, parseCsv, mean } from './helpers.js';
import { quantiles, rarity } from '../dist/rarity.js';

const dir = tempDir('nf-rarity-');
const model = join(dir, 'model');

before(async () => {
  const r = await runNf(['fit', example('moons.csv'), '-m', model, '--epochs', '30', '--seed', '2', '-q']);
  assert.equal(r.code, 0, r.stderr);
});

test('quantiles and the interpolated CDF', () => {
  const q = quantiles([5, 1, 3, 2, 4], 5);
  assert.deepEqual(q, [1, 2, 3, 4, 5]);
  assert.equal(rarity(q, 0), 0);
  assert.equal(rarity(q, 9), 1);
  assert.equal(rarity(q, 3), 0.5);
  assert.equal(rarity(q, 3.5), 0.625);
  assert.ok(Number.isNaN(rarity(q, Number.NaN)));
});

test('held-out rows from the training distribution get roughly uniform rarity; an outlier gets 0', async () => {
  const r = await runNf(['logprob', '-m', model, '--rarity', example('moons-test.csv')]);
  assert.equal(r.code, 0, r.stderr);
  const { header, rows } = parseCsv(r.stdout);
  assert.deepEqual(header, ['logprob', 'rarity']);
  const rar = rows.map((row) => row[1]);
  assert.equal(rar.length, 1000);
  assert.ok(rar.every((v) => v >= 0 && v <= 1));
  assert.ok(Math.abs(mean(rar) - 0.5) < 0.05, `mean rarity ${mean(rar)}`);
  for (let d = 1; d < 10; d++) {
    const frac = rar.filter((v) => v < d / 10).length / rar.length;
    assert.ok(Math.abs(frac - d / 10) < 0.07, `P(rarity < ${d / 10}) = ${frac}`);
  }
  const out = await runNf(['logprob', '-m', model, '--rarity', '--append'], { input: 'x1,x2\n10,10\n' });
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /^x1,x2,logprob,rarity\n10,10,-?[\d.e+]+,0\n$/);
});

test('a checkpoint without the training reference is refused for --rarity', async () => {
  const copy = join(dir, 'noref');
  const r = await runNf(['fit', example('moons.csv'), '-m', copy, '--epochs', '1', '--seed', '2', '-q']);
  assert.equal(r.code, 0, r.stderr);
  const p = join(copy, 'model.json');
  const meta = JSON.parse(readFileSync(p, 'utf8'));
  delete meta.training.logprobQuantiles;
  writeFileSync(p, JSON.stringify(meta));
  const s = await runNf(['logprob', '-m', copy, '--rarity', example('moons-test.csv')]);
  assert.equal(s.code, 1);
  assert.match(s.stderr, /no training log-density reference for --rarity/);
  assert.equal(s.stdout, '');
});
