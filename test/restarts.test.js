// Restarts: several initialisations on one split, the best on validation kept. The answer
// must not depend on whether restarts ran in worker threads or one after another here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startEngine } from '../dist/engine.js';
import { Flow } from '../dist/flow/flow.js';
import { initParams, makePermutations } from '../dist/flow/spec.js';
import { Rng } from '../dist/rng.js';
import { train } from '../dist/train/trainer.js';
import { trainRestarts } from '../dist/train/restarts.js';
import { testBackends } from './helpers.js';

const backends = (await testBackends()).filter((b) => b !== 'tensorflow');

function curvedRows(n, rng) {
  const rows = new Float32Array(n * 2);
  for (let i = 0; i < n; i++) {
    const a = rng.normal();
    rows[2 * i] = a;
    rows[2 * i + 1] = a * a - 1 + 0.3 * rng.normal();
  }
  return rows;
}

for (const backend of backends) {
  test(`${backend}: restarts in workers or in turn pick the same winner, the one with the best validation NLL`, async () => {
    const { tf } = await startEngine(backend);
    const rng = new Rng(21);
    const rows = curvedRows(800, rng);
    const spec = { type: 'rnvp', dim: 2, layers: 4, hidden: 16, hiddenLayers: 2, scaleBound: 2, permutations: makePermutations(2, 4, rng) };
    const cfg = { epochs: 6, batchSize: 128, lr: 3e-3, patience: 50, clipNorm: 5, warmupSteps: 5, plateauEpochs: 0, weightDecay: 0, emaDecay: 0.99, seed: 0, threads: 1, backend };
    const restarts = [11, 12, 13].map((seed) => ({ seed, init: initParams(spec, new Rng(seed)) }));
    const trainRows = rows.subarray(0, 1280);
    const valRows = rows.subarray(1280);
    const flow = new Flow(spec, { mean: [0, 0], std: [1, 1] });
    const before = tf.memory().numTensors;
    const reported = new Set();
    const inWorkers = await trainRestarts(flow, restarts, trainRows, valRows, cfg, { onEpoch: (i) => reported.add(i) }, 2);
    const inTurn = await trainRestarts(flow, restarts, trainRows, valRows, cfg, {}, 0);
    assert.equal(tf.memory().numTensors, before, 'no tensors left behind on this thread');
    assert.deepEqual([...reported].sort(), [0, 1, 2], 'every restart reported its epochs');

    assert.deepEqual(inWorkers.outcomes, inTurn.outcomes);
    assert.equal(inWorkers.chosen, inTurn.chosen);
    assert.deepEqual(Array.from(inWorkers.result.params), Array.from(inTurn.result.params));
    const vals = inTurn.outcomes.map((o) => o.bestValNll);
    assert.equal(new Set(vals).size, 3, `different initialisations end differently: ${vals}`);
    assert.equal(inTurn.chosen, vals.indexOf(Math.min(...vals)));
    assert.equal(inTurn.result.bestValNll, Math.min(...vals));

    // Restart k is exactly a plain training run from its own init and seed.
    const k = inTurn.chosen;
    const plain = await train(flow, restarts[k].init, trainRows, valRows, { ...cfg, seed: restarts[k].seed });
    assert.deepEqual(Array.from(plain.params), Array.from(inTurn.result.params));
    flow.dispose();
  });

  test(`${backend}: a restart that diverges is left out and the others still count`, async () => {
    await startEngine(backend);
    const rng = new Rng(22);
    const rows = curvedRows(400, rng);
    const spec = { type: 'rnvp', dim: 2, layers: 2, hidden: 8, hiddenLayers: 2, scaleBound: 2, permutations: makePermutations(2, 2, rng) };
    const cfg = { epochs: 3, batchSize: 100, lr: 3e-3, patience: 50, clipNorm: 5, warmupSteps: 0, plateauEpochs: 0, weightDecay: 0, seed: 0, threads: 1, backend };
    const good = { seed: 1, init: initParams(spec, new Rng(1)) };
    const broken = { seed: 2, init: new Float32Array(good.init.length).fill(Number.NaN) };
    const flow = new Flow(spec, { mean: [0, 0], std: [1, 1] });
    for (const workers of [0, 1]) {
      const r = await trainRestarts(flow, [good, broken], rows.subarray(0, 640), rows.subarray(640), cfg, {}, workers);
      assert.equal(r.chosen, 0);
      assert.equal(r.outcomes[1].stopReason, 'failed', JSON.stringify(r.outcomes[1]));
      assert.match(r.outcomes[1].error, /diverged/);
      assert.ok(Number.isFinite(r.result.bestValNll));
    }
    // With every restart broken there is nothing to keep: the user hears why.
    await assert.rejects(trainRestarts(flow, [broken, broken], rows.subarray(0, 640), rows.subarray(640), cfg, {}, 1), /diverged/);
    flow.dispose();
  });
}
