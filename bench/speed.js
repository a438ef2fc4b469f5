#!/usr/bin/env node
// Speed benchmark (issue 5): training, scoring and sampling throughput, start-up latency
// and peak memory, per backend, through the real CLI; PyTorch reference back to back
// when /usr/bin/python3 has torch.
//
//   npm run bench [-- --reps 3 --backends wasm,cpu --rows 1000000 --no-torch --out bench/results]
//
// Every figure is a median over --reps repetitions after one warm-up run.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { defaultDataDir, flag, nf, opt, root } from './common.js';

const reps = Number(opt('reps', '3'));
const bigRows = Number(opt('rows', '1000000'));
const dataDir = resolve(opt('data', defaultDataDir));
const outDir = resolve(opt('out', join(root, 'bench', 'results')));
const work = mkdtempSync(join(tmpdir(), 'nf-bench-speed-'));
const timeBin = existsSync('/usr/bin/time') ? '/usr/bin/time' : null;

const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Runs a shell command; returns wall seconds, peak RSS (MB) and stdout. */
function timed(cmd, { input } = {}) {
  const wrapped = timeBin ? `${timeBin} -f '%M' -o ${join(work, 'rss')} bash -c ${JSON.stringify(cmd)}` : cmd;
  const t0 = process.hrtime.bigint();
  const r = spawnSync('bash', ['-c', wrapped], { encoding: 'utf8', maxBuffer: 1 << 30, input, env: { ...process.env, NO_COLOR: '1' } });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${cmd}: exit ${r.status}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  const rssMB = timeBin ? Number(readFileSync(join(work, 'rss'), 'utf8').trim().split('\n').pop()) / 1024 : NaN;
  return { seconds, rssMB, stdout: r.stdout };
}

function repeat(fn, n = reps) {
  fn(); // warm-up (file cache, wasm compilation cache)
  const runs = [];
  for (let i = 0; i < n; i++) runs.push(fn());
  return runs;
}

function probe() {
  // --backends with no model at -m lists just the engines.
  const r = spawnSync(process.execPath, [nf, 'info', '--backends', '--json', '-m', join(work, 'no-model')], { encoding: 'utf8' });
  return JSON.parse(r.stdout).backends;
}

const wantBackends = opt('backends', '')?.split(',').filter(Boolean);
const probed = probe();
const backends = probed.filter((b) => b.ok && (!wantBackends?.length || wantBackends.includes(b.backend))).map((b) => b.backend);
for (const b of probed) process.stderr.write(`backend ${b.backend}: ${b.ok ? 'loads' : `unavailable (${b.reason})`}\n`);

// The reference architecture is fixed (8 couplings, 2×128) whatever nf's defaults are.
const configs = [
  { name: 'D=2 ref arch (8×128)', data: 'moons', hidden: 128, layers: 8 },
  { name: 'D=10 ref arch (8×128)', data: 'gmm10d', hidden: 128, layers: 8 },
  { name: 'D=2 default', data: 'moons', hidden: null, layers: null },
  { name: 'D=10 default', data: 'gmm10d', hidden: null, layers: null },
];

const results = [];
for (const cfg of configs) {
  const trainCsv = join(dataDir, cfg.data, 'train.csv');
  for (const backend of backends) {
    // The pure-JS backend is ~30× slower: measure it once, on a small share of the work.
    if (backend === 'cpu' && cfg.name !== 'D=2 default') continue;
    const scale = backend === 'cpu' ? 50 : 1;
    const rows = Math.round(bigRows / scale);
    const model = join(work, `${cfg.data}-${cfg.hidden ?? 'default'}-${backend}`);
    const archArgs = [...(cfg.hidden ? ['--hidden', String(cfg.hidden)] : []), ...(cfg.layers ? ['--layers', String(cfg.layers)] : []), '--batch-size', '512'];
    const epochs = backend === 'cpu' ? 1 : 3;
    const fitData = backend === 'cpu' ? join(root, 'examples', 'moons.csv') : trainCsv;
    const fitCmd = `${process.execPath} ${nf} fit ${fitData} -m ${model} --backend ${backend} --epochs ${epochs} --patience 1000 --seed 1 --json -q ${archArgs.join(' ')}`;
    process.stderr.write(`${cfg.name} on ${backend}: fit…\n`);
    const fits = repeat(() => {
      const r = timed(fitCmd);
      const j = JSON.parse(r.stdout);
      return { stepSps: j.samplesPerSecond, wallPerEpoch: r.seconds / j.epochs, rssMB: r.rssMB };
    });
    // Start-up latency first, on a quiet page cache, with every repetition kept: earlier runs
    // measured it after the 1M-row jobs and saw 2× the figure a quiet machine gives.
    const tenRows = join(work, 'ten.csv');
    writeFileSync(tenRows, readFileSync(join(dataDir, cfg.data, 'test.csv'), 'utf8').split('\n').slice(0, 11).join('\n') + '\n');
    const small = repeat(() => timed(`${process.execPath} ${nf} logprob -m ${model} --backend ${backend} ${tenRows} > /dev/null`), Math.max(reps, 5));
    process.stderr.write(`${cfg.name} on ${backend}: logprob 10 rows ${small.map((s) => s.seconds.toFixed(3)).join(' ')} s\n`);
    const samplesFile = join(work, 'samples.csv');
    process.stderr.write(`${cfg.name} on ${backend}: sample ${rows}…\n`);
    const samples = repeat(() => {
      const r = timed(`${process.execPath} ${nf} sample -m ${model} --backend ${backend} -n ${rows} --seed 2 > ${samplesFile}`);
      return { rowsPerS: rows / r.seconds, rssMB: r.rssMB };
    });
    process.stderr.write(`${cfg.name} on ${backend}: logprob ${rows}…\n`);
    const scores = repeat(() => {
      const r = timed(`${process.execPath} ${nf} logprob -m ${model} --backend ${backend} ${samplesFile} > /dev/null`);
      return { rowsPerS: rows / r.seconds, rssMB: r.rssMB };
    });
    // The helper thread's share, in this run: the same jobs on one thread (wasm/cpu only).
    let oneThread = null;
    if (backend !== 'tensorflow' && cfg.hidden === 128) {
      process.stderr.write(`${cfg.name} on ${backend}: sample and logprob with NF_THREADS=1…\n`);
      const s1 = repeat(() => rows / timed(`NF_THREADS=1 ${process.execPath} ${nf} sample -m ${model} --backend ${backend} -n ${rows} --seed 2 > ${samplesFile}`).seconds);
      const l1 = repeat(() => rows / timed(`NF_THREADS=1 ${process.execPath} ${nf} logprob -m ${model} --backend ${backend} ${samplesFile} > /dev/null`).seconds);
      oneThread = { sampleRowsPerS: median(s1), logprobRowsPerS: median(l1) };
    }
    results.push({
      oneThread,
      config: cfg.name,
      data: cfg.data,
      hidden: cfg.hidden ?? 'default',
      backend,
      trainStepSamplesPerS: median(fits.map((f) => f.stepSps)),
      fitWallSPerEpoch: median(fits.map((f) => f.wallPerEpoch)),
      fitPeakRssMB: median(fits.map((f) => f.rssMB)),
      sampleRowsPerS: median(samples.map((s) => s.rowsPerS)),
      samplePeakRssMB: median(samples.map((s) => s.rssMB)),
      logprobRowsPerS: median(scores.map((s) => s.rowsPerS)),
      logprobPeakRssMB: median(scores.map((s) => s.rssMB)),
      logprob10RowsWallS: median(small.map((s) => s.seconds)),
      logprob10RowsRunsS: small.map((s) => Number(s.seconds.toFixed(4))),
      logprob10RowsPeakRssMB: median(small.map((s) => s.rssMB)),
      bigRows: rows,
    });
  }
}

// PyTorch reference, back to back, same machine.
const torch = [];
const hasTorch = !flag('no-torch') && spawnSync('/usr/bin/python3', ['-c', 'import torch'], { encoding: 'utf8' }).status === 0;
const refScript = join(dataDir, '..', 'reference', 'ref_realnvp.py');
if (hasTorch && existsSync(refScript)) {
  for (const data of ['moons', 'gmm10d']) {
    process.stderr.write(`PyTorch reference on ${data}…\n`);
    const runs = [];
    for (let i = 0; i < Math.max(1, reps); i++) {
      const out = join(work, `ref-${data}-${i}.json`);
      const r = spawnSync('/usr/bin/python3', [refScript, join(dataDir, data), '--epochs', '3', '--patience', '1000', '--threads', '2', '--quiet', '--out', out], { encoding: 'utf8' });
      if (r.status !== 0) {
        process.stderr.write(`reference failed: ${r.stderr.trim().split('\n').pop()}\n`);
        break;
      }
      runs.push(JSON.parse(readFileSync(out, 'utf8')));
    }
    if (runs.length) {
      torch.push({
        data,
        trainStepSamplesPerS: median(runs.map((r) => r.train_throughput_samples_per_s)),
        scoreRowsPerS: median(runs.map((r) => r.score_chunked_rows_per_s)),
        sampleRowsPerS: median(runs.map((r) => r.sample_chunked_rows_per_s)),
      });
    }
  }
} else {
  process.stderr.write('PyTorch reference skipped (needs /usr/bin/python3 with torch: apt-get install -y python3-torch)\n');
}
rmSync(work, { recursive: true, force: true });

const commit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).stdout.trim();
const k = (v) => (Number.isFinite(v) ? (v >= 1e4 ? `${(v / 1000).toFixed(1)}k` : v.toFixed(0)) : '–');
const mb = (v) => (Number.isFinite(v) ? v.toFixed(0) : '–');
const lines = [
  `nf speed benchmark — commit ${commit}, ${new Date().toISOString()}, ${cpus().length} cores, medians of ${reps} runs after a warm-up`,
  `backends: ${probed.map((b) => `${b.backend} ${b.ok ? 'loads' : 'unavailable'}`).join(', ')}`,
  '',
  '| config | backend | train samples/s (steps) | fit s/epoch | sample rows/s | logprob rows/s | logprob 10 rows s, median (max) | peak RSS MB fit / sample / logprob |',
  '|---|---|---|---|---|---|---|---|',
  ...results.map(
    (r) =>
      `| ${r.config} | ${r.backend} | ${k(r.trainStepSamplesPerS)} | ${r.fitWallSPerEpoch.toFixed(2)} | ${k(r.sampleRowsPerS)} | ${k(r.logprobRowsPerS)} | ${r.logprob10RowsWallS.toFixed(3)} (${Math.max(...r.logprob10RowsRunsS).toFixed(3)}) | ${mb(r.fitPeakRssMB)} / ${mb(r.samplePeakRssMB)} / ${mb(r.logprobPeakRssMB)} |`,
  ),
];
const helperRows = results.filter((r) => r.oneThread);
if (helperRows.length) {
  lines.push('', '| helper thread (1M rows) | backend | sample rows/s 1 thread → default | logprob rows/s 1 thread → default |', '|---|---|---|---|');
  for (const r of helperRows) {
    const o = r.oneThread;
    lines.push(`| ${r.config} | ${r.backend} | ${k(o.sampleRowsPerS)} → ${k(r.sampleRowsPerS)} (×${(r.sampleRowsPerS / o.sampleRowsPerS).toFixed(2)}) | ${k(o.logprobRowsPerS)} → ${k(r.logprobRowsPerS)} (×${(r.logprobRowsPerS / o.logprobRowsPerS).toFixed(2)}) |`);
  }
}
if (torch.length) {
  lines.push('', '| PyTorch reference (8×128, batch 512, 2 threads) | train samples/s | score rows/s (chunked) | sample rows/s (chunked) |', '|---|---|---|---|');
  for (const t of torch) lines.push(`| ${t.data} | ${k(t.trainStepSamplesPerS)} | ${k(t.scoreRowsPerS)} | ${k(t.sampleRowsPerS)} |`);
  lines.push('', '| ratio nf/PyTorch (ref arch) | backend | train | logprob (CLI, incl. CSV) | sample (CLI, incl. CSV) |', '|---|---|---|---|---|');
  for (const r of results.filter((x) => x.hidden === 128)) {
    const t = torch.find((x) => x.data === r.data);
    if (!t) continue;
    lines.push(`| ${r.data} | ${r.backend} | ${(r.trainStepSamplesPerS / t.trainStepSamplesPerS).toFixed(2)} | ${(r.logprobRowsPerS / t.scoreRowsPerS).toFixed(2)} | ${(r.sampleRowsPerS / t.sampleRowsPerS).toFixed(2)} |`);
  }
}
process.stdout.write(lines.join('\n') + '\n');
mkdirSync(outDir, { recursive: true });
const file = join(outDir, `speed-${commit || 'nogit'}.json`);
writeFileSync(file, JSON.stringify({ commit, date: new Date().toISOString(), reps, backends: probed, results, torch }, null, 1) + '\n');
process.stderr.write(`wrote ${file}\n`);
