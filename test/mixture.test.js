// The mixture base: EM initialisation, the choice of K on validation rows, draws, and a
// whole flow over it (normalised, sampling consistent with its density, checkpointed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import { chooseMixture, drawMixture, fitMixture, mixtureLogLik, permuteMixture, refineMixture, setMixture } from '../dist/flow/mixture.js';
import { startEngine } from '../dist/engine.js';
import { disposeWeights, Flow } from '../dist/flow/flow.js';
import { basePermutation, makePermutations } from '../dist/flow/spec.js';
import { Rng } from '../dist/rng.js';
import { example, mean, runNf, tempDir } from './helpers.js';

/** n rows from equal-weight isotropic blobs at `centres` with standard deviation `sd`. */
function blobs(centres, sd, n, rng) {
  const D = centres[0].length;
  const out = new Float32Array(n * D);
  for (let i = 0; i < n; i++) {
    const c = centres[i % centres.length];
    for (let d = 0; d < D; d++) out[i * D + d] = c[d] + sd * rng.normal();
  }
  return out;
}

const ring8 = Array.from({ length: 8 }, (_, k) => [2 * Math.cos((k * Math.PI) / 4), 2 * Math.sin((k * Math.PI) / 4)]);

test('EM recovers separated clusters: weights, means and spreads', () => {
  const rng = new Rng(1);
  const centres = [[-3, 0], [0, 3], [3, -1]];
  const x = blobs(centres, 0.3, 3000, rng);
  const m = fitMixture(x, 2, 3, rng);
  const w = Array.from(m.logits, Math.exp);
  const sum = w.reduce((a, b) => a + b, 0);
  for (const c of centres) {
    // Each true centre has one component on it, with a third of the weight and sd ≈ 0.3.
    const k = [0, 1, 2].find((j) => Math.hypot(m.means[2 * j] - c[0], m.means[2 * j + 1] - c[1]) < 0.05);
    assert.notEqual(k, undefined, `no component at ${c}: ${Array.from(m.means)}`);
    assert.ok(Math.abs(w[k] / sum - 1 / 3) < 0.02, `weight ${w[k] / sum}`);
    for (let d = 0; d < 2; d++) assert.ok(Math.abs(Math.exp(m.logStd[2 * k + d]) - 0.3) < 0.02, `sd ${Math.exp(m.logStd[2 * k + d])}`);
  }
});

test('K is chosen on validation rows: 8 for eight blobs, 1 for one Gaussian, 1 when rows are few', async () => {
  const rng = new Rng(2);
  const eight = await chooseMixture(blobs(ring8, 0.2, 4000, rng), blobs(ring8, 0.2, 1000, rng), 2, rng);
  assert.equal(eight.params.logits.length, 8);
  // The fitted mixture scores the held-out rows like the generating one (entropy of the blobs).
  const truth = { logits: new Float32Array(8), means: Float32Array.from(ring8.flat()), logStd: new Float32Array(16).fill(Math.log(0.2)) };
  const heldOut = blobs(ring8, 0.2, 4000, rng);
  assert.ok(Math.abs(mixtureLogLik(eight.params, heldOut, 2) - mixtureLogLik(truth, heldOut, 2)) < 0.02);
  const one = await chooseMixture(rng.normals(4000 * 2), rng.normals(1000 * 2), 2, rng);
  assert.equal(one.params.logits.length, 1);
  // 10 rows per parameter: 40 rows of 2 columns cannot support 2 components of 5 parameters.
  const few = await chooseMixture(blobs(ring8, 0.2, 40, rng), blobs(ring8, 0.2, 40, rng), 2, rng);
  assert.equal(few.params.logits.length, 1);
});

test('identity couplings over the mixture reordered by basePermutation give exactly the mixture (2-D and 5-D)', async () => {
  const { tf } = await startEngine('cpu');
  for (const [D, layers] of [[2, 64], [2, 8], [5, 8]]) {
    const rng = new Rng(5);
    // Two blobs with different spreads per coordinate: no reordering of coordinates fits as well.
    const n = 2000;
    const x = new Float32Array(n * D);
    for (let i = 0; i < n; i++) for (let d = 0; d < D; d++) x[i * D + d] = (i % 2 ? 1.5 : -1) * (d + 1) * 0.5 + (0.2 + 0.3 * d) * rng.normal();
    const m = fitMixture(x, D, 2, rng);
    const spec = { type: 'rnvp', dim: D, layers, hidden: 8, hiddenLayers: 2, scaleBound: 2, permutations: makePermutations(D, layers, rng), mixture: 2 };
    const flow = new Flow(spec, { mean: Array(D).fill(0), std: Array(D).fill(1) });
    const score = (mix) => {
      const params = new Float32Array(flow.size); // zero last layers: every coupling is the identity
      setMixture(params, mix);
      const w = flow.makeWeights(params);
      const lp = tf.tidy(() => flow.logProb(w, tf.tensor2d(x, [n, D])));
      const v = tf.mean(lp).dataSync()[0];
      lp.dispose();
      disposeWeights(w);
      return v;
    };
    const target = mixtureLogLik(m, x, D);
    assert.ok(Math.abs(score(permuteMixture(m, basePermutation(spec))) - target) < 1e-4, `D=${D}, ${layers} layers`);
    // The flow's permutations do move coordinates, so the unreordered mixture is wrong.
    assert.notDeepEqual(basePermutation(spec), Array.from({ length: D }, (_, i) => i));
    assert.ok(score(m) < target - 0.5, `D=${D}: unaligned ${score(m)} vs ${target}`);
    flow.dispose();
  }
});

test('refineMixture continues EM on every row: same K, higher likelihood than the subsample fit', () => {
  const rng = new Rng(6);
  const x = blobs(ring8, 0.3, 40000, rng);
  const sub = fitMixture(x, 2, 8, rng, 1, 100, 500);
  const all = refineMixture(x, 2, sub);
  assert.equal(all.logits.length, 8);
  assert.ok(mixtureLogLik(all, x, 2) > mixtureLogLik(sub, x, 2) + 1e-4, `${mixtureLogLik(all, x, 2)} vs ${mixtureLogLik(sub, x, 2)}`);
});

test('draws follow the mixture; temperature scales each component\'s spread, not the weights', () => {
  const rng = new Rng(3);
  const m = { logits: Float32Array.from([Math.log(0.25), Math.log(0.75)]), means: Float32Array.from([-5, 0, 5, 1]), logStd: Float32Array.from([0, 0, Math.log(0.5), 0]) };
  for (const T of [1, 0.5]) {
    const z = drawMixture(m, 2, 20000, T, rng);
    const right = [];
    for (let i = 0; i < 20000; i++) if (z[2 * i] > 0) right.push(z[2 * i]);
    assert.ok(Math.abs(right.length / 20000 - 0.75) < 0.015, `weight ${right.length / 20000}`);
    const mu = mean(right);
    const sd = Math.sqrt(mean(right.map((v) => (v - mu) ** 2)));
    assert.ok(Math.abs(mu - 5) < 0.02 && Math.abs(sd - 0.5 * T) < 0.02, `T=${T}: mean ${mu}, sd ${sd}`);
  }
});

test('fit picks a mixture base on clustered data; info, --json, sample and logprob agree; --components 0 is a standard normal', async () => {
  const dir = tempDir('nf-mix-');
  const m = join(dir, 'm');
  const r = await runNf(['fit', example('moons.csv'), '-m', m, '--epochs', '2', '--seed', '1', '--restarts', '1', '--components', '4', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).components, 4);
  assert.match(r.stderr, /over a 4-Gaussian base/);
  const info = await runNf(['info', '-m', m]);
  assert.match(info.stdout, /base\s+mixture of 4 diagonal Gaussians/);
  const meta = JSON.parse(readFileSync(join(m, 'model.json'), 'utf8'));
  assert.equal(meta.flow.mixture, 4);
  // Format version 2 holds the mixture; without one nf still writes version 1 (older nf reads it).
  assert.equal(meta.version, 2);
  assert.deepEqual(meta.weightsManifest[0].weights.slice(-3).map((w) => [w.name, w.shape]), [['base/logits', [4]], ['base/means', [4, 2]], ['base/logstd', [4, 2]]]);

  // Samples come from the model: their mean log density under it matches the model's own
  // expectation of it (minus its entropy), integrated on a grid. Standard normal draws
  // through the same flow have the data's mean and spread (EM keeps both) but miss this.
  const s = await runNf(['sample', '-m', m, '-n', '20000', '--seed', '5', '-o', join(dir, 's.csv')]);
  assert.equal(s.code, 0, s.stderr);
  const lo = [-6, -5];
  const hi = [6, 5];
  const n = 300;
  const cellArea = ((hi[0] - lo[0]) * (hi[1] - lo[1])) / (n * n);
  const cells = [];
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) cells.push(`${lo[0] + ((i + 0.5) * (hi[0] - lo[0])) / n},${lo[1] + ((j + 0.5) * (hi[1] - lo[1])) / n}`);
  const g = await runNf(['logprob', '-', '-m', m, '--no-header'], { input: cells.join('\n') + '\n' });
  assert.equal(g.code, 0, g.stderr);
  const lp = g.stdout.trim().split('\n').slice(1).map(Number);
  const mass = lp.reduce((a, v) => a + Math.exp(v), 0) * cellArea;
  assert.ok(Math.abs(mass - 1) < 0.02, `the grid holds the mass: ${mass}`);
  const expected = lp.reduce((a, v) => a + Math.exp(v) * v, 0) * cellArea;
  const onSamples = JSON.parse((await runNf(['eval', join(dir, 's.csv'), '-m', m, '--json'])).stdout);
  assert.ok(Math.abs(onSamples.meanLogLik - expected) < 4 * onSamples.stderr + 0.01, `samples ${onSamples.meanLogLik} ± ${onSamples.stderr} vs model ${expected}`);

  const plain = await runNf(['fit', example('moons.csv'), '-m', join(dir, 'n'), '--epochs', '1', '--seed', '1', '--restarts', '1', '--components', '0', '--json']);
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(JSON.parse(plain.stdout).components, 0);
  assert.match((await runNf(['info', '-m', join(dir, 'n')])).stdout, /base\s+standard normal/);
  const plainMeta = JSON.parse(readFileSync(join(dir, 'n', 'model.json'), 'utf8'));
  assert.equal(plainMeta.flow.mixture, undefined);
  assert.equal(plainMeta.version, 1);

  // A hand-edited component count is refused like any other damage.
  const p = join(m, 'model.json');
  writeFileSync(p, JSON.stringify({ ...meta, flow: { ...meta.flow, mixture: 2.5 } }));
  const bad = await runNf(['sample', '-m', m, '-n', '2']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /flow.mixture/);
  assert.equal(bad.stderr.trim().split('\n').length, 1);
  writeFileSync(p, JSON.stringify({ ...meta, version: 1 }));
  assert.match((await runNf(['sample', '-m', m, '-n', '2'])).stderr, /flow.mixture needs checkpoint format version 2, the file says 1/);
  writeFileSync(p, JSON.stringify({ ...meta, flow: { ...meta.flow, mixture: 3 } }));
  assert.match((await runNf(['sample', '-m', m, '-n', '2'])).stderr, /expected|shape/);
});

test('a flow that validates worse than its EM mixture is saved as the mixture alone, and fit says so', async () => {
  const dir = tempDir('nf-mix-');
  const rng = new Rng(9);
  const rows = blobs([[-2, 0], [2, 1], [0, -2], [1, 3]], 0.15, 2000, rng);
  const csv = 'a,b\n' + Array.from({ length: 2000 }, (_, i) => `${rows[2 * i]},${rows[2 * i + 1]}`).join('\n') + '\n';
  // One epoch from random couplings cannot match EM on four Gaussian blobs.
  // Two restarts: the second trains in a worker thread (two cores), which gets the fallback too.
  const r = await runNf(['fit', '-', '-m', join(dir, 'm'), '--components', '4', '--epochs', '1', '--restarts', '2', '--seed', '1', '--json'], { input: csv, env: { NF_THREADS: '2' } });
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.bestEpoch, 0);
  assert.equal(j.restartValNlls[0], j.restartValNlls[1], 'both restarts kept the same mixture');
  assert.match(r.stderr, /the 4-Gaussian mixture alone validated better than the trained flow over it; saved the mixture/);
  assert.match(r.stderr, /best val log-lik \S+ nats\/row \(epoch 0, restart 1 of 2\)/);
  assert.match((await runNf(['info', '-m', join(dir, 'm')])).stdout, /training\s+1 epochs \(best 0: the mixture alone,/);
  // The saved model is that mixture: the blobs' held-out rows score as under the generating one.
  const held = blobs([[-2, 0], [2, 1], [0, -2], [1, 3]], 0.15, 2000, rng);
  const truth = { logits: new Float32Array(4), means: Float32Array.from([-2, 0, 2, 1, 0, -2, 1, 3]), logStd: new Float32Array(8).fill(Math.log(0.15)) };
  const e = await runNf(['eval', '-', '-m', join(dir, 'm'), '--json'], { input: 'a,b\n' + Array.from({ length: 2000 }, (_, i) => `${held[2 * i]},${held[2 * i + 1]}`).join('\n') + '\n' });
  assert.equal(e.code, 0, e.stderr);
  assert.ok(Math.abs(JSON.parse(e.stdout).meanLogLik - mixtureLogLik(truth, held, 2)) < 0.03, e.stdout);
});

test('--components does not apply to --target fits', async () => {
  const r = await runNf(['fit', '--target', example('targets/banana.mjs'), '--components', '3', '-m', join(tempDir('nf-mix-'), 'm')]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--components apply to fits to data/);
});

test('by default every restart starts from the chosen mixture (last layers drawn at scales 1, 0.3) and validation picks; --components 0 gives every restart the standard normal, --components K a K-mixture', async () => {
  const dir = tempDir('nf-mix-');
  const r = await runNf(['fit', example('moons.csv'), '-m', join(dir, 'a'), '--epochs', '2', '--seed', '1', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const a = JSON.parse(r.stdout);
  assert.ok(a.restartComponents[0] > 1, `restart 1 has a mixture base: ${a.restartComponents}`);
  assert.equal(a.restartComponents[1], a.restartComponents[0]);
  // The saved model is the restart with the better validation NLL, with that restart's base.
  const best = a.restartValNlls[0] <= a.restartValNlls[1] ? 0 : 1;
  assert.equal(a.chosenRestart, best);
  assert.equal(a.components, a.restartComponents[best]);
  const metaA = JSON.parse(readFileSync(join(dir, 'a', 'model.json'), 'utf8'));
  assert.equal(metaA.flow.mixture, a.components);
  // Mixture restarts alternate how far from the identity their couplings start.
  assert.deepEqual(metaA.training.restarts.map((o) => o.lastLayerScale), [1, 0.3]);
  // Restarts with one base need no per-restart base in info.
  assert.match((await runNf(['info', '-m', join(dir, 'a')])).stdout, /restarts\s+2, kept #\d; val loglik -?[\d.]+, -?[\d.]+\n/);
  const n = await runNf(['fit', example('moons.csv'), '-m', join(dir, 'n'), '--epochs', '1', '--seed', '1', '--components', '0', '--json']);
  assert.deepEqual(JSON.parse(n.stdout).restartComponents, [0, 0]);
  // Over the standard normal the couplings start as the identity.
  const metaN = JSON.parse(readFileSync(join(dir, 'n', 'model.json'), 'utf8'));
  assert.deepEqual(metaN.training.restarts.map((o) => o.lastLayerScale), [0, 0]);
  const k = await runNf(['fit', example('moons.csv'), '-m', join(dir, 'b'), '--epochs', '1', '--seed', '1', '--components', '4', '--json']);
  assert.deepEqual(JSON.parse(k.stdout).restartComponents, [4, 4]);
});

test('--components beyond what the rows support warns and still fits', async () => {
  const dir = tempDir('nf-mix-');
  const rows = readFileSync(example('moons.csv'), 'utf8').trim().split('\n').slice(0, 41).join('\n') + '\n';
  const r = await runNf(['fit', '-', '-m', join(dir, 'm'), '--components', '50', '--epochs', '2', '--seed', '1'], { input: rows });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /warning: --components 50: 32 training rows support about 1 \(10 rows per mixture parameter\)/);
  assert.equal((await runNf(['sample', '-m', join(dir, 'm'), '-n', '3', '--no-header'])).stdout.trim().split('\n').length, 3);
});
