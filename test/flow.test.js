// Flow math: inverses, log-determinants, gradients, normalisation, tensor hygiene —
// on every backend that loads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { startEngine } from '../dist/engine.js';
import { Flow, disposeWeights } from '../dist/flow/flow.js';
import { couplingForward, couplingInverse } from '../dist/flow/coupling.js';
import { buildSpec, defaultArchitecture, initParams, makePermutations } from '../dist/flow/spec.js';
import { Rng } from '../dist/rng.js';
import { testBackends } from './helpers.js';

const require = createRequire(import.meta.url);

function makeFlow(type, dim, { layers = 4, hidden = 16, seed = 1, jitter = 0.3, mean, std, mixture } = {}) {
  const rng = new Rng(seed);
  const spec = { type, dim, layers, hidden, hiddenLayers: 2, scaleBound: 2, permutations: makePermutations(dim, layers, rng) };
  // NICE carries its diagonal scaling layer, as nf builds it.
  if (type === 'nice') spec.diagScale = true;
  if (mixture) spec.mixture = mixture;
  const flow = new Flow(spec, { mean: mean ?? Array(dim).fill(0), std: std ?? Array(dim).fill(1) });
  const params = initParams(spec, rng);
  // Away from the identity start so every term of the math is exercised.
  for (let i = 0; i < params.length; i++) params[i] += jitter * rng.normal();
  return { flow, params, rng, spec };
}

/** log|det| of the Jacobian of f at x (f: Float64 array → array), central differences. */
function numericLogDet(f, x, h = 1e-2) {
  const D = x.length;
  const J = [];
  for (let j = 0; j < D; j++) {
    const a = x.slice();
    const b = x.slice();
    a[j] += h;
    b[j] -= h;
    const fa = f(a);
    const fb = f(b);
    J.push(fa.map((v, i) => (v - fb[i]) / (2 * h))); // column j
  }
  // Determinant by Gaussian elimination with partial pivoting (J is column-major; det is the same).
  const M = J.map((c) => c.slice());
  let logDet = 0;
  for (let c = 0; c < D; c++) {
    let p = c;
    for (let r = c + 1; r < D; r++) if (Math.abs(M[r][c]) > Math.abs(M[p][c])) p = r;
    [M[c], M[p]] = [M[p], M[c]];
    logDet += Math.log(Math.abs(M[c][c]));
    for (let r = c + 1; r < D; r++) {
      const k = M[r][c] / M[c][c];
      for (let q = c; q < D; q++) M[r][q] -= k * M[c][q];
    }
  }
  return logDet;
}

for (const backend of await testBackends()) {
  const { tf } = await startEngine(backend);

  for (const type of ['rnvp', 'nice']) {
    for (const dim of [2, 5]) {
      test(`${backend}: ${type} D=${dim}: each coupling's forward inverts its inverse, log-dets match a numerical Jacobian`, () => {
        const { flow, params, rng } = makeFlow(type, dim);
        const weights = flow.makeWeights(params);
        const cfg = { type, dim, scaleBound: 2 };
        const x = rng.normals(8 * dim);
        for (const w of weights) {
          const [maxErr, dets] = tf.tidy(() => {
            const xt = tf.tensor2d(x, [8, dim]);
            const inv = couplingInverse(xt, w, cfg);
            const back = couplingForward(inv.out, w, cfg, true);
            const err = tf.max(tf.abs(tf.sub(back.out, xt))).dataSync()[0];
            const invLd = inv.logDet ? inv.logDet.dataSync() : new Float32Array(8);
            const fwdLd = back.logDet ? back.logDet.dataSync() : new Float32Array(8);
            return [err, { invLd: Array.from(invLd), fwdLd: Array.from(fwdLd) }];
          });
          assert.ok(maxErr < 1e-4, `round trip error ${maxErr}`);
          for (let r = 0; r < 3; r++) {
            const row = Array.from(x.subarray(r * dim, (r + 1) * dim));
            const f = (v) => tf.tidy(() => Array.from(couplingInverse(tf.tensor2d([v]), w, cfg).out.dataSync()));
            const num = numericLogDet(f, row);
            assert.ok(Math.abs(num - dets.invLd[r]) < 2e-2, `inverse log-det ${dets.invLd[r]} vs numerical ${num}`);
            // The forward map's log-det at the image point is minus the inverse's.
            assert.ok(Math.abs(dets.fwdLd[r] + dets.invLd[r]) < 1e-4, 'forward log-det is minus the inverse log-det');
          }
        }
        disposeWeights(weights);
        flow.dispose();
      });
    }
  }

  for (const type of ['rnvp', 'nice']) test(`${backend}: ${type}: whole-flow log density matches base density + numerical Jacobian (with standardisation)`, () => {
    const { flow, params } = makeFlow(type, 3, { mean: [1, -2, 0.5], std: [2, 0.5, 3] });
    const weights = flow.makeWeights(params);
    const x = [0.7, -1.6, 2.0];
    const lp = tf.tidy(() => flow.logProb(weights, tf.tensor2d([x])).dataSync()[0]);
    const toBase = (v) =>
      tf.tidy(() => Array.from(flow.toBase(flow.standardize(tf.tensor2d([v])), weights).z.dataSync()));
    const z = toBase(x);
    const expected = -0.5 * z.reduce((a, b) => a + b * b, 0) - 1.5 * Math.log(2 * Math.PI) + numericLogDet(toBase, x);
    assert.ok(Math.abs(lp - expected) < 2e-2, `logprob ${lp} vs ${expected}`);
    disposeWeights(weights);
    flow.dispose();
  });

  for (const type of ['rnvp', 'nice']) test(`${backend}: ${type}: a 2-D flow on columns equals the composed generic couplings`, () => {
    const { flow, params, rng } = makeFlow(type, 2, { layers: 5, jitter: 0.3 });
    const weights = flow.makeWeights(params);
    const cfg = { type, dim: 2, scaleBound: 2 };
    const x = rng.normals(50 * 2);
    const [zErr, ldErr, scale] = tf.tidy(() => {
      const xt = tf.tensor2d(x, [50, 2]);
      const { z, logDet } = flow.toBase(xt, weights);
      let u = xt;
      let ld = tf.zeros([50]);
      for (const w of weights) {
        const r = couplingInverse(u, w, cfg);
        u = r.out;
        if (r.logDet) ld = tf.add(ld, r.logDet);
      }
      if (weights.logScale) {
        u = tf.mul(u, tf.exp(weights.logScale));
        ld = tf.add(ld, tf.sum(weights.logScale));
      }
      const err = (p, q) => tf.max(tf.abs(tf.sub(p, q))).dataSync()[0];
      return [err(z, u), err(logDet, ld), tf.max(tf.abs(ld)).dataSync()[0]];
    });
    assert.ok(zErr < 1e-4, `z differs by ${zErr}`);
    assert.ok(ldErr < 1e-4 * Math.max(1, scale), `log-det differs by ${ldErr}`);
    if (type === 'rnvp') assert.ok(scale > 0.1, 'the layers are not volume preserving');
    disposeWeights(weights);
    flow.dispose();
  });

  for (const mixture of [0, 3]) test(`${backend}: exp(logprob) of a 2-D flow integrates to 1 (${mixture ? 'mixture' : 'standard normal'} base)`, () => {
    const { flow, params } = makeFlow('rnvp', 2, { jitter: 0.2, mean: [0.5, -0.3], std: [1.5, 0.8], mixture });
    const weights = flow.makeWeights(params);
    const lo = -12;
    const hi = 12;
    const n = 400;
    const h = (hi - lo) / n;
    const grid = new Float32Array(n * n * 2);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        grid[(i * n + j) * 2] = lo + (i + 0.5) * h;
        grid[(i * n + j) * 2 + 1] = lo + (j + 0.5) * h;
      }
    }
    const lp = tf.tidy(() => flow.logProb(weights, tf.tensor2d(grid, [n * n, 2])).dataSync());
    let mass = 0;
    for (const v of lp) mass += Math.exp(v) * h * h;
    assert.ok(Math.abs(mass - 1) < 0.02, `integral ${mass}`);
    disposeWeights(weights);
    flow.dispose();
  });

  for (const type of ['rnvp', 'nice']) test(`${backend}: ${type}: sampling maps base draws to data that the inverse maps back`, () => {
    const { flow, params, rng } = makeFlow(type, 2, { jitter: 0.2 });
    const weights = flow.makeWeights(params);
    const z = rng.normals(4000 * 2);
    const [zBack] = tf.tidy(() => {
      const x = flow.sample(weights, tf.tensor2d(z, [4000, 2]));
      const { z: zz } = flow.toBase(flow.standardize(x), weights);
      return [tf.max(tf.abs(tf.sub(zz, tf.tensor2d(z, [4000, 2])))).dataSync()[0]];
    });
    assert.ok(zBack < 1e-3, `sample → toBase round trip error ${zBack}`);
    disposeWeights(weights);
    flow.dispose();
  });

  for (const [dim, mixture] of [[2], [3], [2, 3]]) test(`${backend}: D=${dim}${mixture ? ', mixture base' : ''}: no tensors leak across training steps and repeated logprob calls`, async () => {
    const { train } = await import('../dist/train/trainer.js');
    const { Model } = await import('../dist/model.js');
    const start = tf.memory().numTensors;
    const { flow, params, rng, spec } = makeFlow('rnvp', dim, { jitter: 0, mixture });
    const data = rng.normals(300 * dim);
    const before = tf.memory().numTensors;
    const r = await train(flow, params, data.subarray(0, 240 * dim), data.subarray(240 * dim), {
      epochs: 3, batchSize: 64, lr: 1e-3, patience: 5, clipNorm: 5, warmupSteps: 10, plateauEpochs: 2, weightDecay: 0, seed: 1, threads: 1, backend,
    });
    assert.equal(tf.memory().numTensors, before, 'training leaked tensors');
    const meta = { flow: spec, columns: ['a', 'b', 'c'].slice(0, dim), standardization: flow.standardization, training: {} };
    const model = Model.fromParams(meta, r.params);
    const afterLoad = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) model.logProb(data.subarray(0, 10 * dim), 10);
    model.sample(10, 1, rng);
    assert.equal(tf.memory().numTensors, afterLoad, 'logprob/sample leaked tensors');
    model.dispose();
    flow.dispose();
    assert.equal(tf.memory().numTensors, start, 'disposing the model and flow released everything');
  });
}


test('hand-written gradient equals TensorFlow.js autodiff, with and without a mixture base (cpu, all gradients registered)', async () => {
  // tfjs-layers registers every op gradient on the shared tfjs-core instance.
  require('@tensorflow/tfjs-layers');
  const { tf } = await startEngine('cpu');
  for (const [type, dim, mixture] of [['rnvp', 2], ['rnvp', 5], ['nice', 2], ['nice', 5], ['rnvp', 2, 3], ['rnvp', 5, 4], ['nice', 3, 2]]) {
    {
      const { flow, params, rng } = makeFlow(type, dim, { layers: 3, hidden: 8, mixture });
      const x = tf.tensor2d(rng.normals(16 * dim), [16, dim]);
      const weights = flow.makeWeights(params);
      const flat = weights.flatMap((w) => w.kernels.flatMap((k, i) => [k, w.biases[i]]));
      if (weights.logScale) flat.push(weights.logScale);
      if (weights.mixture) flat.push(weights.mixture.logits, weights.mixture.means, weights.mixture.logStd);
      const trainingWeights = flow.makeWeights(params, true);
      const { grad } = flow.lossAndGrad(trainingWeights, x);
      disposeWeights(trainingWeights);
      const auto = tf.grads((...ts) => {
        let i = 0;
        // Built from the kernels alone: 2-D rnvp's precomputed output heads are dropped.
        const ws = weights.map(({ heads, ...w }) => {
          const kernels = [];
          const biases = [];
          for (let k = 0; k < w.kernels.length; k++) {
            kernels.push(ts[i++]);
            biases.push(ts[i++]);
          }
          return { ...w, kernels, biases };
        });
        if (weights.logScale) ws.logScale = ts[i++];
        if (weights.mixture) ws.mixture = { logits: ts[i++], means: ts[i++], logStd: ts[i++] };
        return flow.meanNll(ws, x);
      })(flat);
      const autoFlat = tf.concat(auto.map((g) => tf.reshape(g, [-1])));
      const err = tf.max(tf.abs(tf.sub(grad, autoFlat))).dataSync()[0];
      const scale = tf.max(tf.abs(autoFlat)).dataSync()[0];
      assert.ok(scale > 1e-3, 'gradient is not trivially zero');
      assert.ok(err < 1e-4 * Math.max(1, scale), `${type} D=${dim} K=${mixture ?? 0}: max |analytic − autodiff| = ${err} (scale ${scale})`);
      tf.dispose([grad, autoFlat, x, ...auto]);
      disposeWeights(weights);
      flow.dispose();
    }
  }
});

test('default architecture: 8×64 for small data; with 5000+ training rows 96×32 in 2-D, 12×64 above; flags override', () => {
  assert.deepEqual(defaultArchitecture(2, 2400), { layers: 8, hidden: 64 });
  assert.deepEqual(defaultArchitecture(10, 4999), { layers: 8, hidden: 64 });
  assert.deepEqual(defaultArchitecture(2, 5000), { layers: 96, hidden: 32 });
  assert.deepEqual(defaultArchitecture(2, 20000), { layers: 96, hidden: 32 });
  assert.deepEqual(defaultArchitecture(3, 5000), { layers: 12, hidden: 64 });
  assert.deepEqual(defaultArchitecture(64, 20000), { layers: 12, hidden: 64 });
  const spec = buildSpec('rnvp', 2, { hidden: 48 }, defaultArchitecture(2, 20000), new Rng(1));
  assert.equal(spec.hidden, 48);
  assert.equal(spec.layers, 96);
  assert.equal(spec.permutations.length, 96);
  assert.equal(buildSpec('rnvp', 2, { layers: 10 }, defaultArchitecture(2, 20000), new Rng(1)).hidden, 32);
});

test('initParams: last layers zero by default (the identity flow); lastLayerScale draws their kernels within ±scale/sqrt(hidden), biases still zero', async () => {
  const { paramLayout } = await import('../dist/flow/spec.js');
  const spec = { type: 'rnvp', dim: 3, layers: 4, hidden: 16, hiddenLayers: 2, scaleBound: 2, permutations: makePermutations(3, 4, new Rng(1)), mixture: 2 };
  const lastOf = (params) => {
    const kernels = [];
    const biases = [];
    let offset = 0;
    for (const e of paramLayout(spec)) {
      const values = Array.from(params.subarray(offset, offset + e.size));
      if (e.name.includes('/dense2/')) (e.name.endsWith('/kernel') ? kernels : biases).push(...values);
      offset += e.size;
    }
    return { kernels, biases };
  };
  const zero = lastOf(initParams(spec, new Rng(5)));
  assert.ok(zero.kernels.length > 0 && zero.kernels.every((v) => v === 0));
  for (const scale of [0.5, 1]) {
    const { kernels, biases } = lastOf(initParams(spec, new Rng(5), { lastLayerScale: scale }));
    const bound = scale / Math.sqrt(16);
    assert.ok(kernels.every((v) => Math.abs(v) <= bound), `scale ${scale}: within the bound`);
    assert.ok(Math.max(...kernels.map(Math.abs)) > 0.8 * bound, `scale ${scale}: drawn across the range`);
    assert.ok(biases.every((v) => v === 0), 'biases stay zero');
  }
  // The identity start: with zero last layers the flow leaves points where they are.
  const engine = await startEngine('cpu');
  const flow = new Flow({ ...spec, mixture: undefined }, { mean: [0, 0, 0], std: [1, 1, 1] });
  try {
    const w = flow.makeWeights(initParams({ ...spec, mixture: undefined }, new Rng(5)));
    const x = [0.3, -1.2, 2.0];
    const [z, logDet] = engine.tf.tidy(() => {
      const r = flow.toBase(engine.tf.tensor2d([x]), w);
      return [r.z.arraySync()[0], r.logDet.arraySync()[0]];
    });
    // Up to the fixed permutations between couplings.
    assert.deepEqual(z.map((v) => v.toFixed(6)).sort(), x.map((v) => v.toFixed(6)).sort());
    assert.equal(logDet, 0);
    disposeWeights(w);
  } finally {
    flow.dispose();
  }
});
