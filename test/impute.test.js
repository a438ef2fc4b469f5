// `nf impute`: missing cells filled from the flow's conditional density; everything else untouched.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { root, runNf, tempDir } from './helpers.js';

const moons = join(root, 'models', 'moons');
const dir = tempDir('nf-impute-');
let gauss; // a flow fitted to a correlated 2-D Gaussian: b = 0.8·a + 0.6·ε, a ~ N(0, 1)

/** Seeded standard normals (Box–Muller on a small LCG). */
function normals(seed) {
  let s = seed >>> 0;
  const u = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
}

const lines = (text) => text.trim().split('\n');

before(async () => {
  const n = normals(11);
  const rows = ['a,b'];
  for (let i = 0; i < 2000; i++) {
    const a = n();
    rows.push(`${a.toFixed(5)},${(0.8 * a + 0.6 * n()).toFixed(5)}`);
  }
  const data = join(dir, 'gauss.csv');
  writeFileSync(data, rows.join('\n') + '\n');
  gauss = join(dir, 'gauss-model');
  const r = await runNf(['fit', data, '-m', gauss, '--layers', '4', '--hidden', '32', '--epochs', '40', '--patience', '8', '--seed', '1', '-q']);
  assert.equal(r.code, 0, r.stderr);
});

// An id column the model does not know, observed cells with more digits than float32
// holds, every spelling of "missing", a complete row and an all-missing row.
const MIXED = [
  'id,x1,x2',
  'r1,0.123456789012,',
  'r2,NA,-0.25',
  'r3,1.5,0.30000000000000004',
  'r4,,',
  'r5,NaN,1e-1',
  'r6,-0.9,nan',
].join('\n');

test('impute fills only the missing cells, keeps order, extra columns and observed text exactly', async () => {
  const r = await runNf(['impute', '-m', moons, '--seed', '1', '-'], { input: MIXED });
  assert.equal(r.code, 0, r.stderr);
  const out = lines(r.stdout);
  const inp = lines(MIXED);
  assert.equal(out[0], 'id,x1,x2');
  assert.equal(out.length, inp.length);
  for (let i = 1; i < inp.length; i++) {
    const a = inp[i].split(',');
    const b = out[i].split(',');
    assert.equal(b.length, 3);
    assert.equal(b[0], a[0], 'row order and the extra column are kept');
    for (const j of [1, 2]) {
      if (['', 'NA', 'NaN', 'nan'].includes(a[j])) assert.ok(Number.isFinite(Number(b[j])) && b[j] !== '', `row ${i} col ${j} filled: '${b[j]}'`);
      else assert.equal(b[j], a[j], `observed cell row ${i} col ${j} unchanged`);
    }
  }
  assert.equal(out[3], inp[3], 'a complete row passes through unchanged');
  assert.match(r.stderr, /imputed 6 cell\(s\) in 5 of 6 row\(s\) \(1 with every model column missing\)/);
});

test('-k gives k consecutive rows per input row with a draw column; --mean gives one row', async () => {
  const k = await runNf(['impute', '-m', moons, '-k', '3', '--seed', '2', '-q', '-'], { input: MIXED });
  assert.equal(k.code, 0, k.stderr);
  const out = lines(k.stdout);
  assert.equal(out[0], 'id,x1,x2,draw');
  assert.equal(out.length, 1 + 6 * 3);
  const inp = lines(MIXED).slice(1);
  inp.forEach((line, i) => {
    const draws = out.slice(1 + i * 3, 4 + i * 3).map((l) => l.split(','));
    assert.deepEqual(draws.map((d) => d[3]), ['1', '2', '3']);
    for (const d of draws) assert.equal(d[0], line.split(',')[0]);
    if (i === 2) for (const d of draws) assert.equal(d.slice(0, 3).join(','), line, 'complete row repeated unchanged');
  });
  // Draws of a row differ from one another (they are draws, not copies).
  const firstRow = out.slice(1, 4).map((l) => l.split(',')[2]);
  assert.equal(new Set(firstRow).size, 3);

  const m = await runNf(['impute', '-m', moons, '--mean', '-k', '20', '--seed', '2', '-q', '-'], { input: MIXED });
  assert.equal(m.code, 0, m.stderr);
  const mean = lines(m.stdout);
  assert.equal(mean[0], 'id,x1,x2');
  assert.equal(mean.length, 7);
  assert.deepEqual(mean.slice(1).map((l) => l.split(',')[0]), ['r1', 'r2', 'r3', 'r4', 'r5', 'r6']);
});

test('the same seed gives the same output; headerless input is matched by position', async () => {
  const input = '0.5,\n,0.1\n';
  const a = await runNf(['impute', '-m', moons, '--seed', '7', '--no-header', '-q', '-'], { input });
  const b = await runNf(['impute', '-m', moons, '--seed', '7', '--no-header', '-q', '-'], { input });
  assert.equal(a.code, 0, a.stderr);
  assert.equal(a.stdout, b.stdout);
  const out = lines(a.stdout);
  assert.equal(out.length, 2, 'no header in, no header out');
  assert.match(out[0], /^0\.5,-?\d/);
  assert.match(out[1], /^-?\d[^,]*,0\.1$/);
});

test('conditional draws match the analytic Gaussian conditional (mean 0.8·a, sd 0.6)', async () => {
  const given = [-1.5, -0.5, 0.5, 1.5];
  const input = ['a,b', ...given.map((a) => `${a},`)].join('\n');
  const K = 300;
  const r = await runNf(['impute', '-m', gauss, '-k', String(K), '--seed', '5', '-q', '-'], { input });
  assert.equal(r.code, 0, r.stderr);
  const rows = lines(r.stdout).slice(1).map((l) => l.split(',').map(Number));
  given.forEach((a, i) => {
    const b = rows.slice(i * K, (i + 1) * K).map((row) => row[1]);
    const mean = b.reduce((s, v) => s + v, 0) / K;
    const sd = Math.sqrt(b.reduce((s, v) => s + (v - mean) ** 2, 0) / (K - 1));
    assert.ok(Math.abs(mean - 0.8 * a) < 0.2, `E[b | a=${a}] ≈ ${0.8 * a}, got ${mean.toFixed(3)}`);
    assert.ok(sd > 0.45 && sd < 0.78, `sd[b | a=${a}] ≈ 0.6, got ${sd.toFixed(3)}`);
  });
  // And the other way round, with --mean: E[a | b=1.2] = 0.96.
  const m = await runNf(['impute', '-m', gauss, '--mean', '--seed', '5', '-q', '-'], { input: 'a,b\n,1.2\n' });
  assert.equal(m.code, 0, m.stderr);
  const a = Number(lines(m.stdout)[1].split(',')[0]);
  assert.ok(Math.abs(a - 0.96) < 0.2, `E[a | b=1.2] ≈ 0.96, got ${a}`);
});

test("bimodal conditional (moons, x2 given x1 = 0.5): draws follow the model's own conditional, both modes in proportion", async () => {
  // 20 copies of the row, 100 draws each: 200 chains in one batch, 2000 draws pooled.
  const K = 2000;
  const r = await runNf(['impute', '-m', moons, '-k', '100', '--seed', '3', '-q', '-'], { input: 'x1,x2\n' + '0.5,\n'.repeat(20) });
  assert.equal(r.code, 0, r.stderr);
  const draws = lines(r.stdout).slice(1).map((l) => Number(l.split(',')[1])).sort((a, b) => a - b);
  // The exact conditional by quadrature: the model's density along the line x1 = 0.5.
  const step = 0.004;
  const grid = [];
  for (let y = -4; y <= 4; y += step) grid.push(y);
  const lp = await runNf(['logprob', '-m', moons, '-'], { input: 'x1,x2\n' + grid.map((y) => `0.5,${y}`).join('\n') + '\n' });
  assert.equal(lp.code, 0, lp.stderr);
  const logp = lines(lp.stdout).slice(1).map(Number);
  const top = Math.max(...logp);
  const w = logp.map((v) => Math.exp(v - top));
  const total = w.reduce((a, b) => a + b, 0);
  let cdf = 0;
  let ks = 0;
  let j = 0;
  let upper = 0;
  for (let i = 0; i < grid.length; i++) {
    cdf += w[i] / total;
    if (grid[i] > 0.3) upper += w[i] / total;
    while (j < K && draws[j] <= grid[i] + step / 2) j++;
    ks = Math.max(ks, Math.abs(cdf - j / K));
  }
  const upperDraws = draws.filter((v) => v > 0.3).length / K;
  assert.ok(upper > 0.3 && upper < 0.8, `the conditional is bimodal here (upper mode ${upper.toFixed(3)})`);
  assert.ok(Math.abs(upperDraws - upper) < 0.05, `upper-mode share ${upperDraws.toFixed(3)} vs ${upper.toFixed(3)}`);
  assert.ok(ks < 0.06, `Kolmogorov–Smirnov distance to the quadrature conditional ${ks.toFixed(4)}`);
});

test('impute refuses what it cannot condition on, and bad options', async () => {
  // file:line like every other reader error (a blank line, skipped, still counts as a line).
  const inf = await runNf(['impute', '-m', moons, '-'], { input: 'x1,x2\n0.5,0.1\n\n1,inf\n' });
  assert.equal(inf.code, 1);
  assert.match(inf.stderr, /^nf: error: stdin:4: column 'x2': 'inf' is infinite/);
  const col = await runNf(['impute', '-m', moons, '-'], { input: 'x1,y\n1,2\n' });
  assert.equal(col.code, 1);
  assert.match(col.stderr, /missing column\(s\) 'x2'/);
  const text = await runNf(['impute', '-m', moons, '-'], { input: 'x1,x2\n1,abc\n' });
  assert.equal(text.code, 1);
  assert.match(text.stderr, /'abc' is not a number/);
  const k0 = await runNf(['impute', '-m', moons, '-k', '0', '-'], { input: 'x1,x2\n1,\n' });
  assert.equal(k0.code, 2);
  assert.equal(k0.stdout, '');
});
