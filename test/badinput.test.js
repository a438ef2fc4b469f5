// The bad-input corpus (test/badinput/): every way a user can feed nf something wrong, run
// through the real binary. A failure must exit 1 (2 for usage errors) with exactly one line
// on stderr naming the file, line and column where that applies, nothing on stdout and no
// stack trace. Also: faults while writing, and interrupting `fit`.
import { test, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { cpSync, existsSync, readFileSync, readdirSync, writeFileSync, mkdirSync, statSync } from 'node:fs';
import { bin, example, root, runNf, runShell, tempDir } from './helpers.js';

const corpus = (name) => join(root, 'test', 'badinput', name);
const moons = join(root, 'models', 'moons');
// Every run happens in a scratch directory so a case that wrongly succeeds cannot write ./nf-model in the repo.
const cwd = tempDir('nf-badinput-');
// The backend is not what is tested here, and wasm starts fastest (native TensorFlow takes ~1.5 s to load).
const env = { NF_BACKEND: 'wasm' };
const nf = (args, opts = {}) => runNf(args, { cwd, ...opts, env: { ...env, ...opts.env } });

/** A clean failure: the exit code, one line on stderr matching `pattern`, nothing on stdout. */
function assertFails(r, code, pattern, what) {
  assert.equal(r.code, code, `${what}: exit ${r.code}, stderr: ${r.stderr}`);
  assert.equal(r.stdout, '', `${what}: nothing on stdout`);
  assert.match(r.stderr, /^nf: error: [^\n]+\n$/, `${what}: exactly one line on stderr: ${JSON.stringify(r.stderr)}`);
  assert.doesNotMatch(r.stderr, /internal error|\bat .*:\d+:\d+/, `${what}: no stack trace`);
  assert.match(r.stderr, pattern, what);
}

/** Runs `jobs` (functions returning promises) a few at a time: the corpus is mostly process start-up. */
async function inBatches(jobs, size = 4) {
  for (let i = 0; i < jobs.length; i += size) await Promise.all(jobs.slice(i, i + size).map((j) => j()));
}

const fitArgs = (file, ...more) => ['fit', corpus(file), '-m', join(cwd, 'never-written'), '--epochs', '1', ...more];

test('malformed CSV is refused with file, line and column (exit 1, one line)', async () => {
  const cases = [
    ['empty file', fitArgs('empty.csv'), /empty\.csv: empty input \(no rows\)/],
    ['blank lines only', fitArgs('blank-lines.csv'), /blank-lines\.csv: empty input/],
    ['a BOM and nothing else', ['logprob', corpus('bom-only.csv'), '-m', moons], /bom-only\.csv: empty input/],
    ['header only (fit)', fitArgs('header-only.csv'), /header-only\.csv: a header but no data rows; nf needs at least 10 rows/],
    ['header only (eval)', ['eval', corpus('header-only.csv'), '-m', moons], /header-only\.csv: no data rows to evaluate \(only a header\)/],
    ['ragged row, short', fitArgs('ragged-short.csv'), /ragged-short\.csv:3: ragged row: 1 field\(s\), expected 2 like the header/],
    ['ragged row, long', ['logprob', corpus('ragged-long.csv'), '-m', moons], /ragged-long\.csv:3: ragged row: 3 field\(s\), expected 2/],
    ['non-numeric cell', fitArgs('text-cell.csv'), /text-cell\.csv:4: column 'x1' \(1\): 'abc' is not a number/],
    ['text column', fitArgs('text-column.csv'), /text-column\.csv:2: column 'name' \(1\): 'row0' is not a number; choose numeric columns with --columns/],
    ['decimal commas', fitArgs('decimal-comma.csv'), /decimal-comma\.csv:2: column 'x1' \(1\): '2,3155207' is not a number \(nf reads '\.' as the decimal separator\)/],
    [
      'missing and non-finite values (fit)',
      fitArgs('missing-values.csv'),
      /missing-values\.csv:3: column 'x2' \(2\): empty cell; 5 rows have missing, non-finite or too-large values \(lines 3, 5, 7, 9, 11\); use --drop-invalid to skip such rows/,
    ],
    [
      'missing and non-finite values (logprob)',
      ['logprob', corpus('missing-values.csv'), '-m', moons],
      /missing-values\.csv:3: .*5 rows .*\(lines 3, 5, 7, 9, 11\); use --drop-invalid to give such rows logprob nan/,
    ],
    ['missing and non-finite values (eval)', ['eval', corpus('missing-values.csv'), '-m', moons], /5 rows .*use --drop-invalid to leave such rows out/],
    ['1e308 overflows float32', fitArgs('overflow.csv'), /overflow\.csv:3: column 'x1' \(1\): '1e308' is too large for float32; 2 rows .*\(lines 3, 4\)/],
    ['duplicate column names', ['logprob', corpus('duplicate-names.csv'), '-m', moons], /duplicate-names\.csv:1: duplicate column name 'x1' \(columns 1 and 3\)/],
    ['empty column name', fitArgs('empty-name.csv'), /empty-name\.csv:1: column 1 has an empty name in the header/],
    ['unclosed quote', fitArgs('unclosed-quote.csv'), /unclosed-quote\.csv:3: malformed CSV: a quoted field is not closed/],
    ['stray quote', fitArgs('stray-quote.csv'), /stray-quote\.csv:3: malformed CSV: a quote inside an unquoted field/],
    ['binary file', fitArgs('binary.csv'), /binary\.csv: holds NUL bytes: binary data or UTF-16 text, not UTF-8 CSV/],
    ['--columns names a missing column', fitArgs('plain.csv', '--columns', 'x1,zz'), /plain\.csv: --columns: no column named 'zz' \(columns: x1, x2\)/],
    ['--columns index out of range', fitArgs('plain.csv', '--columns', '1,5'), /plain\.csv: --columns 5: there are only 2 columns/],
    ['a single row', fitArgs('single-row.csv'), /single-row\.csv: only 1 data row\(s\); nf needs at least 10 rows/],
    ['fewer rows than the minimum', fitArgs('too-few-rows.csv'), /too-few-rows\.csv: only 5 data row\(s\); nf needs at least 10/],
    ['--drop-invalid leaves too few rows', fitArgs('overflow.csv', '--drop-invalid'), /overflow\.csv: 1 data row\(s\) left after --drop-invalid skipped 2/],
    ['one column', fitArgs('one-column.csv'), /one-column\.csv: nf needs at least 2 numeric columns, got 1 \('x1'\)/],
    ['constant column', fitArgs('constant-column.csv'), /constant-column\.csv: column 'c' is constant \(3\) .*leave it out with --columns/],
    ['input file missing', fitArgs('no-such-file.csv'), /no-such-file\.csv: no such file/],
    ['input is a directory', ['logprob', join(root, 'test', 'badinput'), '-m', moons], /badinput: is a directory/],
  ];
  await inBatches(cases.map(([what, args, pattern]) => async () => assertFails(await nf(args), 1, pattern, what)));
  assert.ok(!existsSync(join(cwd, 'never-written')), 'no checkpoint from a failed fit');
});

test('input whose columns do not match the model is refused by name, count or position', async () => {
  const cases = [
    ['other names', ['logprob', corpus('renamed-columns.csv'), '-m', moons], /renamed-columns\.csv: missing column\(s\) 'x1', 'x2' that the model needs \(model columns: x1, x2; input: a, b\)/],
    ['fewer columns', ['eval', corpus('fewer-columns.csv'), '-m', moons], /fewer-columns\.csv: missing column\(s\) 'x2'/],
    ['more columns, no header', ['logprob', corpus('more-columns-no-header.csv'), '-m', moons], /3 column\(s\) without a header, the model has 2 \(x1, x2\)/],
    ['no header, --no-header given', ['eval', corpus('more-columns-no-header.csv'), '-m', moons, '--no-header'], /3 column\(s\) without a header/],
  ];
  await inBatches(cases.map(([what, args, pattern]) => async () => assertFails(await nf(args), 1, pattern, what)));
});

test('formats users produce give the same log densities as plain CSV', async () => {
  const plain = await nf(['logprob', corpus('plain.csv'), '-m', moons]);
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(plain.stdout.trim().split('\n').length, 13);
  const files = ['crlf.csv', 'bom.csv', 'semicolon.csv', 'tab.tsv', 'quoted.csv', 'order.csv', 'unused-columns.csv', 'no-header.csv', 'text-column.csv'];
  await inBatches(
    files.map((f) => async () => {
      const r = await nf(['logprob', corpus(f), '-m', moons]);
      assert.equal(r.code, 0, `${f}: ${r.stderr}`);
      assert.equal(r.stderr, '', f);
      assert.equal(r.stdout, plain.stdout, `${f}: same log densities as plain.csv`);
    }),
  );
  // --append keeps the input's cells, re-quoted for a comma-separated output.
  const appended = await nf(['logprob', '--append', corpus('quoted.csv'), '-m', moons]);
  assert.equal(appended.code, 0, appended.stderr);
  assert.match(appended.stdout, /^note,x1,x2,logprob\nplain,2\.3155207,-0\.56333792,-?\d/);
  assert.match(appended.stdout, /\n"with, comma",1\.9025768,/);
  assert.match(appended.stdout, /\n"with ""quotes""",/);
  assert.match(appended.stdout, /\n"two\nlines",/);
});

test('header only and a single row: logprob writes exactly one row per input row', async () => {
  const header = await nf(['logprob', corpus('header-only.csv'), '-m', moons]);
  assert.equal(header.code, 0, header.stderr);
  assert.equal(header.stdout, 'logprob\n');
  const appended = await nf(['logprob', '--append', corpus('header-only.csv'), '-m', moons]);
  assert.equal(appended.stdout, 'x1,x2,logprob\n');
  const one = await nf(['logprob', corpus('single-row.csv'), '-m', moons]);
  assert.equal(one.code, 0, one.stderr);
  assert.match(one.stdout, /^logprob\n-?\d[^\n]*\n$/);
});

test('--drop-invalid: logprob keeps alignment with nan, eval and fit skip and count', async () => {
  const lp = await nf(['logprob', '--append', '--drop-invalid', corpus('missing-values.csv'), '-m', moons]);
  assert.equal(lp.code, 0, lp.stderr);
  const lines = lp.stdout.trim().split('\n');
  const input = readFileSync(corpus('missing-values.csv'), 'utf8').trim().split('\n');
  assert.equal(lines.length, input.length, 'one output row per input row');
  lines.slice(1).forEach((l, i) => {
    const invalid = [2, 4, 6, 8, 10].includes(i + 1);
    assert.equal(l.startsWith(input[i + 1] + ','), true, l);
    if (invalid) assert.ok(l.endsWith(',nan'), `row ${i + 1} has logprob nan: ${l}`);
    else assert.match(l, /,-?\d[\d.e+-]*$/, l);
  });
  const bare = await nf(['logprob', '--drop-invalid', '-q', corpus('missing-values.csv'), '-m', moons]);
  assert.deepEqual(bare.stdout.trim().split('\n').map((l) => (l === 'nan' ? l : 'x')), ['x', ...lines.slice(1).map((l) => (l.endsWith(',nan') ? 'nan' : 'x'))], 'no blank lines without --append either');
  assert.match(lp.stderr, /^nf: warning: 5 row\(s\) with missing or non-finite values got logprob nan \(first: .*missing-values\.csv:3: column 'x2' \(2\): empty cell\)\n$/);

  const ev = await nf(['eval', '--json', '--drop-invalid', corpus('missing-values.csv'), '-m', moons]);
  assert.equal(ev.code, 0, ev.stderr);
  const e = JSON.parse(ev.stdout);
  assert.equal(e.rows, 12);
  assert.equal(e.droppedRows, 5);
  assert.match(ev.stderr, /^nf: warning: skipped 5 row\(s\)/);

  const m = join(cwd, 'dropped');
  const fit = await nf(['fit', corpus('missing-values.csv'), '-m', m, '--epochs', '1', '--seed', '1', '--drop-invalid', '--json']);
  assert.equal(fit.code, 0, fit.stderr);
  assert.equal(JSON.parse(fit.stdout).droppedRows, 5);
  assert.match(fit.stderr, /warning: skipped 5 row\(s\) with missing or non-finite values \(first: .*missing-values\.csv:3/);
});

test('integer-valued columns: a warning, and --dequantize fits with noise added', async () => {
  const plain = await nf(['fit', corpus('integer-columns.csv'), '-m', join(cwd, 'int'), '--epochs', '1', '--seed', '1']);
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.stderr, /warning: integer-valued column\(s\) 'count', 'level': .*degenerate; consider --dequantize/);
  const deq = await nf(['fit', corpus('integer-columns.csv'), '-m', join(cwd, 'deq'), '--epochs', '1', '--seed', '1', '--dequantize']);
  assert.equal(deq.code, 0, deq.stderr);
  assert.doesNotMatch(deq.stderr, /integer-valued/);
  const info = JSON.parse((await nf(['info', '--json', '-m', join(cwd, 'deq')])).stdout);
  assert.equal(info.training.dequantize, true);
});

test('bad options are usage errors: exit 2, one line, nothing on stdout', async () => {
  const csv = corpus('plain.csv');
  const cases = [
    ['sample', '-m', moons, '-n', '0'],
    ['sample', '-m', moons, '-n', '-5'],
    ['sample', '-m', moons, '-n', '1.5'],
    ['sample', '-m', moons, '-n', 'many'],
    ['sample', '-m', moons, '--temperature', '0'],
    ['sample', '-m', moons, '--temperature', '-1'],
    ['sample', '-m', moons, '--seed', '-1'],
    // Parses to Infinity: must not print rows of -inf.
    ['sample', '-m', moons, '--temperature', '1e400'],
    ['sample', '-m', moons, '-n', '99999999999999999999'],
    ['sample', '-m'],
    ['fit', csv, '--layers', '0'],
    ['fit', csv, '--hidden', '0'],
    ['fit', csv, '--epochs', '0'],
    ['fit', csv, '--batch-size', '0'],
    ['fit', csv, '--patience', '0'],
    ['fit', csv, '--lr', '-1'],
    ['fit', csv, '--lr', '0'],
    ['fit', csv, '--lr', 'nan'],
    ['fit', csv, '--val-split', '1.5'],
    ['fit', csv, '--val-split', '0'],
    ['fit', csv, '--columns', 'x1,,x2'],
    ['fit', csv, '--columns', 'x1,x1'],
    ['fit', csv, 'extra.csv'],
    ['fit', csv, '--backend', 'gpu'],
    ['sample', '-m', ''],
    ['eval'],
    ['frobnicate'],
  ];
  await inBatches(cases.map((args) => async () => assertFails(await nf(args), 2, /./, args.join(' '))));
  assertFails(await nf(['sample', '-m', moons], { env: { NF_BACKEND: 'gpu' } }), 2, /unknown backend 'gpu' \(expected one of: tensorflow, wasm, cpu\)/, 'NF_BACKEND=gpu');
  assertFails(await nf(['fit', csv, '--columns', '0', '-m', join(cwd, 'never-written')]), 1, /--columns 0: column indices start at 1/, 'fit --columns 0');
  // A name and an index for the same column: refused before anything is trained or written.
  assertFails(await nf(['fit', csv, '--columns', '1,x1', '-m', join(cwd, 'never-written')]), 2, /--columns 1 and x1 both pick column 1 \('x1'\)/, 'fit --columns 1,x1');
  assert.ok(!existsSync(join(cwd, 'never-written')));
  // Options that do not apply to the kind of fit are refused, not ignored (--steps ran a full fit).
  assertFails(await nf(['fit', csv, '--steps', '5']), 2, /fit: --steps applies to --target fits; a fit to data runs up to --epochs/, 'fit --steps');
  const target = join(root, 'examples', 'targets', 'banana.mjs');
  assertFails(await nf(['fit', '--target', target, '--val-split', '0.5', '--restarts', '3']), 2, /fit: --val-split, --restarts apply to fits to data, not to --target fits/, 'fit --target --val-split');
});

test('unwritable output: clear error, exit 1, nothing half-written', async () => {
  const dir = tempDir('nf-badout-');
  const file = join(dir, 'a-file.csv');
  writeFileSync(file, 'not a directory\n');
  await inBatches([
    async () => assertFails(await nf(['sample', '-m', moons, '-n', '5', '-o', join(dir, 'missing', 'out.csv')]), 1, /out\.csv: cannot write: no such directory/, 'missing directory'),
    async () => assertFails(await nf(['sample', '-m', moons, '-n', '5', '-o', dir]), 1, /is a directory; give a file name/, 'a directory'),
    async () => assertFails(await nf(['sample', '-m', moons, '-n', '5', '-o', join(file, 'out.csv')]), 1, /cannot write: .*a-file\.csv is not a directory/, 'under a file'),
    // The checkpoint path is checked before training, so this fails at once.
    async () => assertFails(await nf(['fit', example('moons.csv'), '-m', join(file, 'model')]), 1, /model: cannot write a checkpoint there: .*a-file\.csv is a file, not a directory/, 'fit -m under a file'),
    async () => assertFails(await nf(['fit', example('moons.csv'), '-m', '/proc/nf-model']), 1, /\/proc\/nf-model: cannot write a checkpoint there/, 'fit -m in /proc'),
  ]);
  assert.equal(readFileSync(file, 'utf8'), 'not a directory\n');
  assert.deepEqual(readdirSync(dir), ['a-file.csv'], 'no temporary files left behind');
});

test('an interrupted sample -o leaves neither the file nor a temporary one', async () => {
  // Once the moment the temporary file appears (this raced the signal handlers before
  // they were installed ahead of the open), once mid-write, for each signal.
  for (const signal of ['SIGINT', 'SIGTERM']) {
    for (const when of ['at open', 'at open', 'at open', 'mid-write']) {
      const dir = tempDir('nf-sigout-');
      const child = spawn(process.execPath, [bin, 'sample', '-m', moons, '-n', '5000000', '-o', join(dir, 'out.csv')], { cwd, env: { ...process.env, ...env } });
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      const written = () => readdirSync(dir).length > 0 && (when === 'at open' || statSync(join(dir, readdirSync(dir)[0])).size > 0);
      const deadline = Date.now() + 15000;
      while (Date.now() < deadline && !written()) await new Promise((r) => (when === 'at open' ? setImmediate(r) : setTimeout(r, 5)));
      assert.equal(readdirSync(dir).length, 1, `${signal} ${when}: the temporary file was there`);
      child.kill(signal);
      const code = await new Promise((resolve) => child.on('close', (c) => resolve(c)));
      assert.equal(code, signal === 'SIGINT' ? 130 : 143, `${signal} ${when}: exit code, stderr: ${stderr}`);
      assert.deepEqual(readdirSync(dir), [], `${signal} ${when}: nothing left in the output directory`);
    }
  }
});

const hasScript = spawnSync('script', ['--version']).status === 0;
test('fit on a terminal 0 columns wide (a pty without a size) finishes instead of spinning', { skip: !hasScript && 'no script(1)' }, async () => {
  const model = join(cwd, 'pty-model');
  const cmd = `stty cols 0 rows 0; env -u NO_COLOR -u CI NF_BACKEND=wasm timeout -s KILL 50 '${process.execPath}' '${bin}' fit '${example('moons.csv')}' -m '${model}' --epochs 1 --restarts 1`;
  // ora's line count divided by the width: this hung with unbounded output before.
  const r = await runShell(`timeout 60 script -qec "${cmd}" /dev/null | head -c 100000 | wc -c`, { cwd });
  assert.ok(existsSync(join(model, 'model.json')), `the fit finished and saved (output ${r.stdout.trim()} bytes)`);
  assert.ok(Number(r.stdout) < 5000, `no runaway output: ${r.stdout.trim()} bytes`);
});

test('fit on a terminal with NO_COLOR shows progress as plain lines, no spinner', { skip: !hasScript && 'no script(1)' }, async () => {
  const model = join(cwd, 'nocolor-model');
  const cmd = `stty cols 120 rows 40; env -u CI NO_COLOR=1 NF_BACKEND=wasm timeout -s KILL 50 '${process.execPath}' '${bin}' fit '${example('moons.csv')}' -m '${model}' --epochs 2 --restarts 1`;
  const r = await runShell(`timeout 60 script -qec "${cmd}" /dev/null | head -c 100000`, { cwd });
  assert.match(r.stdout, /nf: epoch 1\/2 /, `progress shown: ${JSON.stringify(r.stdout)}`);
  assert.doesNotMatch(r.stdout, /\u001b/, 'no escape sequences (spinner, colour)');
});

test('eval: a row of zero density makes the mean -inf (not nan), with a warning', async () => {
  const r = await nf(['eval', '-m', moons, '-'], { input: 'x1,x2\n1e30,0\n0.5,0.2\n' });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim().split('\n')[1].split(',').slice(0, 3).join(','), '2,2,-inf');
  assert.match(r.stderr, /1 row\(s\) have zero density under the model/);
  const j = await nf(['eval', '-m', moons, '-', '--json', '-q'], { input: 'x1,x2\n1e30,0\n0.5,0.2\n' });
  assert.equal(JSON.parse(j.stdout).zeroDensityRows, 1);
  // On the cpu backend 3e38 overflows to inf − inf inside the flow: still -inf, not nan.
  const cpu = await nf(['logprob', '-m', moons, '-', '--backend', 'cpu'], { input: 'x1,x2\n3e38,0\n0.5,0.2\n' });
  assert.equal(cpu.code, 0, cpu.stderr);
  assert.equal(cpu.stdout.trim().split('\n')[1], '-inf');
});

test('a column of tiny but varying values is not called constant; a constant one is', async () => {
  const rows = Array.from({ length: 40 }, (_, i) => `${(Math.sin(i) * 1e-30).toPrecision(6)},${Math.cos(i * 1.3).toFixed(4)}`);
  const fit = await nf(['fit', '-', '-m', join(cwd, 'tiny-model'), '--epochs', '1', '--restarts', '1', '-q'], { input: `a,b\n${rows.join('\n')}\n` });
  assert.equal(fit.code, 0, fit.stderr);
  const constant = rows.map((r) => `1e-30,${r.split(',')[1]}`);
  assertFails(await nf(['fit', '-', '-m', join(cwd, 'never-written'), '--epochs', '1'], { input: `a,b\n${constant.join('\n')}\n` }), 1, /column 'a' is constant/, 'constant tiny column');
});

test('control characters from a file are shown escaped: an error stays one line', async () => {
  // A header name with a newline and an escape sequence, listed in the missing-columns error.
  const r = await nf(['logprob', '-', '-m', moons], { input: '"a\nb\u001b[31m",x1\n1,2\n' });
  assertFails(r, 1, /missing column\(s\) 'x2' .*input: a\\x0ab\\x1b\[31m, x1\)/, 'newline in a header name');
  // JSON.parse quotes the broken text, newlines included.
  const bad = join(tempDir('nf-badjson-'), 'm');
  cpSync(moons, bad, { recursive: true });
  writeFileSync(join(bad, 'model.json'), '{\n"format":\n oops\n}\n');
  assertFails(await nf(['sample', '-m', bad]), 1, /model\.json: not valid JSON/, 'a JSON excerpt with newlines');
});

test('sample: rows that overflow float32 at an extreme --temperature are warned about', async () => {
  const r = await nf(['sample', '-m', moons, '-n', '3', '--seed', '1', '--temperature', '1e38']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /nan|inf/);
  assert.match(r.stderr, /^nf: warning: 1 row\(s\) overflowed float32 \(nan or inf cells\): --temperature 1e\+38/);
  const calm = await nf(['sample', '-m', moons, '-n', '3', '--seed', '1', '--temperature', '10']);
  assert.equal(calm.stderr, '');
});

test('UTF-16 input is named as such, not reported as garbled column names', async () => {
  const u16 = join(tempDir('nf-u16-'), 'excel-unicode.csv');
  writeFileSync(u16, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('x1,x2\n1,2\n', 'utf16le')]));
  assertFails(await nf(['logprob', '-m', moons, u16]), 1, /excel-unicode\.csv: looks like UTF-16 text; nf reads UTF-8 CSV/, 'UTF-16 with BOM');
});

test('sample -o /dev/stdout (or /dev/stderr) appends to a stream redirected with >> instead of truncating it', async () => {
  const out = join(tempDir('nf-devstdout-'), 'log.csv');
  writeFileSync(out, 'kept\n');
  const r = await runShell(`$NF sample -m '${moons}' -n 3 --seed 1 -o /dev/stdout >> '${out}'`, { cwd, env });
  assert.equal(r.code, 0, r.stderr);
  const lines = readFileSync(out, 'utf8').trim().split('\n');
  assert.deepEqual(lines.slice(0, 2), ['kept', 'x1,x2']);
  assert.equal(lines.length, 5);
  // The same for -o /dev/stderr with 2>>.
  const err = await runShell(`$NF sample -m '${moons}' -n 3 --seed 1 -o /dev/stderr 2>> '${out}'`, { cwd, env });
  assert.equal(err.code, 0);
  assert.equal(readFileSync(out, 'utf8').trim().split('\n').length, 9);
});

test('a column of values from 2^24 up (timestamps) is not called integer-valued; a tiny --val-split is warned about', async () => {
  const rows = Array.from({ length: 300 }, (_, i) => `${1.7e9 + i * 3600},${Math.sin(i).toFixed(5)}`);
  const r = await nf(['fit', '-', '-m', join(cwd, 'stamps'), '--epochs', '1', '--restarts', '1', '--val-split', '0.01'], { input: `t,y\n${rows.join('\n')}\n` });
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /integer-valued/);
  assert.match(r.stderr, /warning: --val-split 0\.01 holds out only 3 row\(s\): early stopping on so few is mostly noise/);
});

test('a full disk: sample -o /dev/full and stdout on /dev/full fail cleanly', { skip: !existsSync('/dev/full') && 'no /dev/full' }, async () => {
  assertFails(await nf(['sample', '-m', moons, '-n', '100000', '-o', '/dev/full']), 1, /\/dev\/full: cannot write: no space left on device/, 'sample -o /dev/full');
  assert.ok(statSync('/dev/full').isCharacterDevice(), 'the device is written to, never replaced');
  const r = await runShell(`$NF logprob '${corpus('plain.csv')}' -m '${moons}' > /dev/full`, { cwd, env });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^nf: error: stdout: cannot write: no space left on device\n$/);
  // A small output fails only when the file is closed: that failure counted as success.
  assertFails(await nf(['sample', '-m', moons, '-n', '2', '-o', '/dev/full']), 1, /\/dev\/full: cannot write: no space left on device/, 'sample -n 2 -o /dev/full');
  // Summaries and descriptions written straight to stdout.
  for (const cmd of [`info -m '${moons}'`, `info -m '${moons}' --json`, `plot -m '${moons}' -o - --format svg`]) {
    const w = await runShell(`$NF ${cmd} > /dev/full`, { cwd, env });
    assert.equal(w.code, 1, cmd);
    assert.match(w.stderr, /^nf: error: stdout: cannot write: no space left on device\n$/, cmd);
  }
});

test('a stderr that closes early (2>&1 | true) loses messages, not the exit status', async () => {
  // \`true\` has exited long before nf (100+ ms to start) writes its warning.
  const r = await runShell(`$NF logprob '${corpus('missing-values.csv')}' -m '${moons}' --drop-invalid 2>&1 >/dev/null | true; echo "status \${PIPESTATUS[0]}"`, { cwd, env });
  assert.match(r.stdout, /status 0/);
});

test('very long lines are read in linear time: a 20,000-column header, a 200 kB cell', async () => {
  const dir = tempDir('nf-long-');
  const wide = join(dir, 'wide.csv');
  const names = Array.from({ length: 20000 }, (_, i) => `col${i}`);
  writeFileSync(wide, `${names.join(',')}\n${names.map((_, i) => i % 7).join(',')}\n`);
  // Quadratic scans took 100 s (header) and 34 s (cell); killed after 30 s they fail here.
  const w = await runNf(['logprob', '-m', moons, wide], { cwd, env, timeout: 30000 });
  assertFails(w, 1, /missing column\(s\) 'x1', 'x2' .*input: col0, col1, .*…\)$/m, 'wide header');
  assert.ok(w.stderr.length < 1000, 'the column list is cut short');
  const cell = join(dir, 'cell.csv');
  writeFileSync(cell, `x1,x2\n${'1'.repeat(200000)}a,1\n`);
  assertFails(await runNf(['logprob', '-m', moons, cell], { cwd, env, timeout: 30000 }), 1, /cell\.csv:2: column 'x1' \(1\): '1{40}…' is not a number/, 'long cell');
});

test('logprob big.csv | head ends quietly with exit 0', async () => {
  const big = join(tempDir('nf-big-'), 'big.csv');
  const row = readFileSync(corpus('plain.csv'), 'utf8').trim().split('\n').slice(1).join('\n') + '\n';
  writeFileSync(big, 'x1,x2\n' + row.repeat(5000));
  const r = await runShell(`set -o pipefail; $NF logprob '${big}' -m '${moons}' | head -3`, { cwd, env });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  assert.equal(r.stdout.split('\n').length, 4);
});

// ---------------------------------------------------------------- interrupting fit

/** Starts `nf fit` and returns the child plus a promise of its result. */
function startFit(args, { input } = {}) {
  const child = spawn(process.execPath, [bin, 'fit', ...args], { cwd, env: { ...process.env, NO_COLOR: '1', NF_MODEL: '', ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  child.stdin.on('error', () => {});
  if (input !== undefined) child.stdin.write(input);
  else child.stdin.end();
  const done = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Starts fit and sends `signal` after a few seconds; once more, waiting longer, if `tooEarly(result)` (a slow machine). */
async function interruptFit(args, signal, tooEarly) {
  let r;
  for (const wait of [4000, 10000]) {
    const { child, done } = startFit(args);
    await sleep(wait);
    child.kill(signal);
    r = await done;
    if (!tooEarly(r)) break;
  }
  return r;
}
const snapshot = (dir) => ({ json: readFileSync(join(dir, 'model.json')), weights: readFileSync(join(dir, 'weights.bin')) });
const leftovers = (parent) => readdirSync(parent).filter((f) => f.startsWith('.'));

let bigMoons;
let scores;
before(async () => {
  // Three copies of the moons data: with --batch-size 1 the first epoch takes many seconds.
  const dir = tempDir('nf-sig-');
  const text = readFileSync(example('moons.csv'), 'utf8');
  const rows = text.slice(text.indexOf('\n') + 1);
  bigMoons = join(dir, 'moons3.csv');
  writeFileSync(bigMoons, 'x1,x2\n' + rows + rows + rows);
  scores = (await nf(['logprob', example('moons-test.csv'), '-m', moons])).stdout;
});

/** A fresh copy of the bundled model, to play "the checkpoint that was there before". */
function previousCheckpoint(name) {
  const parent = tempDir('nf-prev-');
  const dir = join(parent, name);
  cpSync(moons, dir, { recursive: true });
  return { parent, dir, before: snapshot(dir) };
}

async function assertUnchanged(prev) {
  assert.deepEqual(snapshot(prev.dir), prev.before, 'previous checkpoint byte-identical');
  assert.deepEqual(leftovers(prev.parent), [], 'no temporary directories');
  const again = await nf(['logprob', example('moons-test.csv'), '-m', prev.dir]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stdout, scores, 'and it gives the same log densities');
}

// The scenarios are independent (each has its own directories) and mostly wait: run them side by side.
describe('interrupting fit', { concurrency: true }, () => {
  test('SIGINT after some epochs: saves the best weights so far, says so, exits 130', async () => {
    const prev = previousCheckpoint('model');
    // A tiny network with one big batch: an epoch takes milliseconds, so many finish before the signal.
    const args = [example('moons.csv'), '-m', prev.dir, '--layers', '1', '--hidden', '4', '--batch-size', '4096', '--epochs', '1000000', '--patience', '1000000', '--seed', '5'];
    const r = await interruptFit(args, 'SIGINT', (res) => /before (training started|the first epoch)/.test(res.stderr));
    assert.equal(r.code, 130, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /SIGINT: stopping after the current step/);
    assert.match(r.stderr, /saved .*model: rnvp 1×4( over a \d+-Gaussian base)? on 2 columns.*SIGINT: saved the best weights so far/);
    assert.deepEqual(leftovers(prev.parent), []);
    const info = await nf(['info', '--json', '-m', prev.dir]);
    assert.equal(info.code, 0, info.stderr);
    const meta = JSON.parse(info.stdout);
    assert.equal(meta.training.stopReason, 'interrupted (SIGINT)');
    assert.equal(meta.flow.layers, 1);
    assert.ok(meta.training.epochs >= 1);
  });

  test('SIGTERM during fit --target: says it is stopping, saves the flow so far, exits 143', async () => {
    const dir = join(tempDir('nf-target-sig-'), 'banana');
    const args = ['--target', join(root, 'examples', 'targets', 'banana.mjs'), '-m', dir, '--steps', '10000000', '--layers', '2', '--hidden', '8', '--seed', '3'];
    // Exit code null: killed before nf listened for signals.
    const r = await interruptFit(args, 'SIGTERM', (res) => res.code === null);
    assert.equal(r.code, 143, r.stderr);
    assert.match(r.stderr, /SIGTERM: stopping after the current step/);
    assert.match(r.stderr, /saved .*banana: rnvp 2×8 fitted to .*banana\.mjs by reverse KL, \d+ steps \(SIGTERM: stopped early\)/);
    const meta = JSON.parse((await nf(['info', '--json', '-m', dir])).stdout);
    assert.equal(meta.training.stopReason, 'interrupted (SIGTERM)');
  });

  test('SIGINT before the first epoch finishes: nothing saved, previous checkpoint byte-identical', async () => {
    const prev = previousCheckpoint('model');
    const { child, done } = startFit([bigMoons, '-m', prev.dir, '--batch-size', '1', '--epochs', '5', '--seed', '5']);
    await sleep(2500);
    child.kill('SIGINT');
    const r = await done;
    assert.equal(r.code, 130, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /SIGINT before (training started|the first epoch finished): nothing saved; any previous checkpoint at .*model is unchanged/);
    await assertUnchanged(prev);
  });

  test('SIGINT while reading the input: nothing saved, the previous checkpoint survives', async () => {
    // Reading stdin that never ends: the signal arrives before training starts.
    const a = previousCheckpoint('model');
    const reading = startFit(['-', '-m', a.dir], { input: 'x1,x2\n1,2\n3,4\n' });
    await sleep(2500);
    reading.child.kill('SIGINT');
    const r = await reading.done;
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /^nf: SIGINT before training started: nothing saved; any previous checkpoint at .*model is unchanged\n$/);
    await assertUnchanged(a);
  });

  test('a second SIGTERM stops at once without saving', async () => {
    const b = previousCheckpoint('model');
    const twice = startFit([bigMoons, '-m', b.dir, '--batch-size', '1', '--epochs', '5', '--seed', '5']);
    await sleep(2500);
    twice.child.kill('SIGTERM');
    await sleep(50);
    twice.child.kill('SIGTERM');
    const r = await twice.done;
    assert.equal(r.code, 143, r.stderr);
    // The second signal may find nf already winding down after the first; nothing is saved either way.
    assert.match(r.stderr, /SIGTERM (again, stopping now|before training started|before the first epoch finished): nothing saved; any previous checkpoint at .*model is unchanged/);
    await assertUnchanged(b);
  });

  test('SIGKILL mid-training: nothing is written until the end, so nothing is damaged', async () => {
    const c = previousCheckpoint('model');
    const killed = startFit([bigMoons, '-m', c.dir, '--batch-size', '1', '--epochs', '5', '--seed', '5']);
    await sleep(2500);
    killed.child.kill('SIGKILL');
    const r = await killed.done;
    assert.equal(r.signal, 'SIGKILL');
    await assertUnchanged(c);
  });
});
