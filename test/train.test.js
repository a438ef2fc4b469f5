// Training machinery: data-parallel gradients equal single-thread ones; the optimiser and
// trainer behave (early stopping keeps the best weights, results reproducible by seed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startEngine } from '../dist/engine.js';
import { Flow } from '../dist/flow/flow.js';
import { basePermutation, initParams, makePermutations } from '../dist/flow/spec.js';
import { fitMixture, permuteMixture, setMixture } from '../dist/flow/mixture.js';
import { Rng } from '../dist/rng.js';
import { LocalGradients, ParallelGradients } from '../dist/train/gradients.js';
import { rowLogProbs, train } from '../dist/train/trainer.js';
import { Adam } from '../dist/train/adam.js';
import { testBackends } from './helpers.js';

const backends = (await testBackends()).filter((b) => b !== 'tensorflow');

for (const backend of backends) {
  for (const mixture of [0, 3]) test(`${backend}: a batch split across worker threads gives the single-thread loss and gradient${mixture ? ' (mixture base)' : ''}`, async () => {
    const { tf } = await startEngine(backend);
    const D = 5;
    const rng = new Rng(4);
    const spec = { type: 'rnvp', dim: D, layers: 4, hidden: 16, hiddenLayers: 2, scaleBound: 2, permutations: makePermutations(D, 4, rng) };
    if (mixture) spec.mixture = mixture;
    const flow = new Flow(spec, { mean: Array(D).fill(0), std: Array(D).fill(1) });
    const init = initParams(spec, rng);
    for (let i = 0; i < init.length; i++) init[i] += 0.1 * rng.normal();
    const params = new Float32Array(new SharedArrayBuffer(init.length * 4));
    params.set(init);
    const rows = rng.normals(1000 * D);
    const data = tf.tensor2d(rows, [1000, D]);
    const idx = rng.permutation(1000).slice(0, 301);
    const pool = await ParallelGradients.start(flow, data, rows, params, backend, 2);
    try {
      for (let round = 0; round < 2; round++) {
        const a = await new LocalGradients(flow, data).compute(params, idx);
        const loss = a.loss;
        const grad = a.grad.slice();
        const b = await pool.compute(params, idx);
        assert.ok(Math.abs(loss - b.loss) < 1e-5, `loss ${loss} vs ${b.loss}`);
        let err = 0;
        for (let i = 0; i < grad.length; i++) err = Math.max(err, Math.abs(grad[i] - b.grad[i]));
        assert.ok(err < 1e-5, `max gradient difference ${err}`);
        params[7] += 0.25; // workers must see parameter updates through shared memory
      }
    } finally {
      await pool.close();
      data.dispose();
      flow.dispose();
    }
  });

  test(`${backend}: training is reproducible by seed and keeps the best validation weights`, async () => {
    await startEngine(backend);
    const D = 2;
    const rng = new Rng(9);
    const rows = new Float32Array(600 * D);
    for (let i = 0; i < 600; i++) {
      const a = rng.normal();
      rows[2 * i] = a;
      rows[2 * i + 1] = a * a - 1 + 0.3 * rng.normal(); // a curved density, standardised-ish
    }
    const spec = { type: 'rnvp', dim: D, layers: 4, hidden: 16, hiddenLayers: 2, scaleBound: 2, permutations: makePermutations(D, 4, rng) };
    const run = async (threads) => {
      const flow = new Flow(spec, { mean: [0, 0], std: [1, 1] });
      const r = await train(flow, initParams(spec, new Rng(1)), rows.subarray(0, 960), rows.subarray(960), {
        epochs: 8, batchSize: 256, lr: 3e-3, patience: 50, clipNorm: 5, warmupSteps: 5, plateauEpochs: 0, weightDecay: 0, seed: 5, threads, backend,
      });
      flow.dispose();
      return r;
    };
    const a = await run(1);
    const b = await run(1);
    assert.deepEqual(Array.from(a.params), Array.from(b.params), 'same seed, same weights');
    const best = Math.min(...a.history.map((h) => h.valNll));
    assert.equal(a.bestValNll, best);
    assert.ok(a.history[a.history.length - 1].valNll < a.history[0].valNll, 'validation NLL went down');
    const c = await run(2);
    assert.ok(Math.abs(c.bestValNll - a.bestValNll) < 1e-3, `2 threads ${c.bestValNll} vs 1 thread ${a.bestValNll}`);
  });
}

test('with a weight average, the weights kept are the averaged ones that were validated', async () => {
  await startEngine('cpu');
  const rng = new Rng(3);
  const rows = new Float32Array(800 * 2);
  for (let i = 0; i < 800; i++) {
    const a = rng.normal();
    rows[2 * i] = a;
    rows[2 * i + 1] = Math.sin(2 * a) + 0.2 * rng.normal();
  }
  const spec = { type: 'rnvp', dim: 2, layers: 4, hidden: 16, hiddenLayers: 2, scaleBound: 2, permutations: makePermutations(2, 4, rng) };
  const flow = new Flow(spec, { mean: [0, 0], std: [1, 1] });
  const val = rows.subarray(1200);
  const run = (emaDecay) =>
    train(flow, initParams(spec, new Rng(2)), rows.subarray(0, 1200), val, {
      epochs: 10, batchSize: 64, lr: 3e-3, patience: 50, clipNorm: 5, warmupSteps: 5, plateauEpochs: 0, weightDecay: 0, emaDecay, seed: 1, threads: 1, backend: 'cpu',
    });
  const raw = await run(0);
  const avg = await run(0.95);
  // Same shuffles and steps: only what is scored and kept differs.
  assert.deepEqual(avg.history.map((h) => h.trainNll), raw.history.map((h) => h.trainNll));
  assert.notDeepEqual(Array.from(avg.params), Array.from(raw.params));
  const lp = rowLogProbs(flow, avg.params, val);
  const nll = -lp.reduce((a, b) => a + b, 0) / lp.length;
  assert.ok(Math.abs(nll - avg.bestValNll) < 1e-4, `kept weights score ${nll}, reported best ${avg.bestValNll}`);
  flow.dispose();
});

test('Adam with clipping converges on a quadratic and respects the clip factor', () => {
  const p = new Float32Array([5, -3]);
  const adam = new Adam(p);
  for (let i = 0; i < 2000; i++) adam.step(new Float32Array([2 * p[0], 2 * p[1]]), 0.05);
  assert.ok(Math.abs(p[0]) < 1e-2 && Math.abs(p[1]) < 1e-2, `ended at ${p}`);
  const q = new Float32Array([1]);
  new Adam(q).step(new Float32Array([1000]), 0.1, 0);
  assert.equal(q[0], 1, 'a zero clip factor means no step');
});

test('Adam weight decay is decoupled: with a zero gradient each step shrinks by (1 − lr·decay)', () => {
  const p = new Float32Array([2, -4]);
  const adam = new Adam(p, { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.5 });
  for (let i = 0; i < 10; i++) adam.step(new Float32Array([0, 0]), 0.1);
  const f = (1 - 0.1 * 0.5) ** 10;
  assert.ok(Math.abs(p[0] - 2 * f) < 1e-5 && Math.abs(p[1] + 4 * f) < 1e-5, `ended at ${p}, expected ${2 * f}, ${-4 * f}`);
  // The decay does not pass through Adam's normalisation: a large gradient does not scale it.
  const q = new Float32Array([1]);
  const r = new Float32Array([1]);
  new Adam(q, { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.5 }).step(new Float32Array([1000]), 0.1);
  new Adam(r).step(new Float32Array([1000]), 0.1);
  assert.ok(Math.abs(q[0] - (r[0] - 0.1 * 0.5)) < 1e-5, `decayed step ${q[0]} vs plain ${r[0]}`);
  // decayEnd: the parameters from that index on (a mixture base's) are not decayed.
  const s = new Float32Array([2, -4, 3]);
  const partial = new Adam(s, { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.5, decayEnd: 1 });
  for (let i = 0; i < 10; i++) partial.step(new Float32Array([0, 0, 0]), 0.1);
  assert.ok(Math.abs(s[0] - 2 * f) < 1e-5, `decayed: ${s[0]}`);
  assert.deepEqual(Array.from(s.subarray(1)), [-4, 3]);
});

test('a fallback is kept only when it validates better than every epoch; after 3×patience epochs a flow behind it stops unless it is closing the gap', async () => {
  await startEngine('cpu');
  const rng = new Rng(8);
  // Two tight blobs: a two-component mixture with identity couplings is nearly the truth.
  const n = 1500;
  const rows = new Float32Array(n * 2);
  for (let i = 0; i < n; i++) {
    rows[2 * i] = (i % 2 ? 1 : -1) + 0.1 * rng.normal();
    rows[2 * i + 1] = (i % 2 ? -0.5 : 0.5) + 0.1 * rng.normal();
  }
  const spec = { type: 'rnvp', dim: 2, layers: 4, hidden: 16, hiddenLayers: 2, scaleBound: 2, permutations: makePermutations(2, 4, rng), mixture: 2 };
  const flow = new Flow(spec, { mean: [0, 0], std: [1, 1] });
  const good = new Float32Array(flow.size);
  setMixture(good, permuteMixture(fitMixture(rows, 2, 2, rng), basePermutation(spec)));
  // The same mixture with its components pushed far from the data.
  const bad = Float32Array.from(good);
  setMixture(bad, { logits: new Float32Array(2), means: Float32Array.from([9, 9, -9, -9]), logStd: new Float32Array(4) });
  const init = initParams(spec, new Rng(2), { lastLayerScale: 1 });
  setMixture(init, { logits: new Float32Array(2), means: new Float32Array(4), logStd: new Float32Array(4) });
  const cfg = { epochs: 5, batchSize: 100, lr: 1e-4, patience: 1, clipNorm: 5, warmupSteps: 1, plateauEpochs: 0, weightDecay: 0, seed: 1, threads: 1, backend: 'cpu' };
  const val = rows.subarray(2400);
  const none = await train(flow, init, rows.subarray(0, 2400), val, cfg);
  const kept = await train(flow, init, rows.subarray(0, 2400), val, cfg, {}, good);
  const ignored = await train(flow, init, rows.subarray(0, 2400), val, cfg, {}, bad);
  assert.equal(none.fellBack, false);
  assert.equal(kept.fellBack, true);
  assert.equal(kept.bestEpoch, 0);
  assert.deepEqual(Array.from(kept.params), Array.from(good));
  const lp = rowLogProbs(flow, kept.params, val);
  assert.ok(Math.abs(-lp.reduce((a, b) => a + b, 0) / lp.length - kept.bestValNll) < 1e-4);
  assert.ok(kept.bestValNll < none.bestValNll - 0.5, `${kept.bestValNll} vs ${none.bestValNll}`);
  // Improving every epoch, the flow alone runs all 5; behind the fallback it gets 3 (3 × patience).
  assert.equal(none.epochsRun, 5);
  assert.equal(none.stopReason, 'epochs');
  assert.equal(kept.epochsRun, 3);
  assert.equal(kept.stopReason, 'patience');
  assert.deepEqual(kept.history, none.history.slice(0, 3));
  // A fallback the flow is closing on fast enough (the weights of its own epoch 4, with
  // gains shrinking epoch by epoch) does not stop it at epoch 3.
  const gains = none.history.map((h, i) => (i === 0 ? Infinity : none.history[i - 1].valNll - h.valNll));
  assert.ok(gains[1] > gains[2] && gains[2] > gains[3] && gains[3] > 0, `gains ${gains}`);
  const epoch4 = await train(flow, init, rows.subarray(0, 2400), val, { ...cfg, epochs: 4 });
  const closing = await train(flow, init, rows.subarray(0, 2400), val, cfg, {}, epoch4.params);
  assert.equal(closing.epochsRun, 5);
  assert.equal(closing.fellBack, false);
  assert.deepEqual(closing.history, none.history);
  // A fallback the flow beats changes nothing: the same epochs, the same weights.
  assert.equal(ignored.fellBack, false);
  assert.deepEqual(ignored.history, none.history);
  assert.deepEqual(Array.from(ignored.params), Array.from(none.params));
  flow.dispose();
});
