// Reading CSV input: formats users produce, and clear one-line errors for bad input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { readTable } from '../dist/data/csv-reader.js';
import { formatFloat32 } from '../dist/data/numbers.js';

const src = (text, name = 'in.csv') => ({ name, stream: Readable.from([Buffer.from(text)]) });
const read = (text, opts = {}) => readTable(src(text), { header: true, dropInvalid: false, ...opts });

test('header detection, BOM, CRLF, quotes, ; and tab delimiters', async () => {
  for (const text of [
    'a,b\n1,2\n3,4\n',
    '\uFEFFa,b\r\n1,2\r\n3,4\r\n',
    '"a","b"\n"1","2"\n3,4',
    'a;b\n1;2\n3;4\n',
    'a\tb\n1\t2\n3\t4\n',
    'a,b\n\n1,2\n3,4\n\n',
  ]) {
    const t = await read(text);
    assert.deepEqual(t.columns, ['a', 'b'], JSON.stringify(text));
    assert.deepEqual(Array.from(t.data), [1, 2, 3, 4], JSON.stringify(text));
  }
  const noHeader = await read('1,2\n3,4\n');
  assert.deepEqual(noHeader.columns, ['x1', 'x2']);
  assert.equal(noHeader.rows, 2);
  const forced = await read('5,6\n1,2\n', { header: false });
  assert.equal(forced.rows, 2);
  const numbers = await read('a,b\n1e-3,-2.5E2\n+.5,7.\n');
  assert.deepEqual(Array.from(numbers.data), [Math.fround(1e-3), -250, 0.5, 7]);
});

test('--columns by name and by 1-based index', async () => {
  const t = await read('a,b,c\n1,2,3\n4,5,6\n', { columns: ['c', '1'] });
  assert.deepEqual(t.columns, ['c', 'a']);
  assert.deepEqual(Array.from(t.data), [3, 1, 6, 4]);
  await assert.rejects(read('a,b\n1,2\n', { columns: ['z'] }), /no column named 'z' \(columns: a, b\)/);
  await assert.rejects(read('a,b\n1,2\n', { columns: ['3'] }), /only 2 columns/);
});

test('bad input is refused with file, line and column', async () => {
  await assert.rejects(read(''), /in.csv: empty input/);
  await assert.rejects(read('\uFEFF\n\n'), /empty input/);
  await assert.rejects(read('a,b\n1,2\n3\n'), /in.csv:3: ragged row/);
  await assert.rejects(read('a,b\n1,2\n3,hello\n'), /in.csv:3: column 'b' \(2\): 'hello' is not a number/);
  await assert.rejects(read('a,a\n1,2\n'), /duplicate column name 'a' \(columns 1 and 2\)/);
  await assert.rejects(read('a,b\n1,2\n3,NA\n'), /in.csv:3: column 'b' \(2\): missing or non-finite value 'NA' \(use --drop-invalid/);
  await assert.rejects(read('a,b\n1,\n'), /in.csv:2: column 'b' \(2\): missing/);
  await assert.rejects(read('a,b\n1,inf\n'), /non-finite value 'inf'/);
  await assert.rejects(read('a,b\n1,1e308\n'), /'1e308' is too large for float32/);
  await assert.rejects(read('a,b\n1,"2\n'), /in.csv:\d+: malformed CSV/);
});

test('--drop-invalid skips missing and non-finite rows and counts them', async () => {
  const t = await read('a,b\n1,2\nNaN,3\n4,-inf\n5,6\n,7\n', { dropInvalid: true });
  assert.equal(t.rows, 2);
  assert.equal(t.stats.dropped, 3);
  assert.match(t.stats.firstDropped, /in.csv:3/);
  assert.deepEqual(Array.from(t.data), [1, 2, 5, 6]);
});

test('numbers are written with enough digits to round-trip float32', () => {
  for (const v of [0, 1, -2.5, 0.1, 1 / 3, 123456.789, 1e-30, 3.4e38, -7.0000005, Math.PI]) {
    const f = Math.fround(v);
    const s = formatFloat32(f);
    assert.equal(Math.fround(Number(s)), f, `${v} → ${s}`);
    assert.ok(!s.includes(','), 'never locale formatting');
  }
  assert.equal(formatFloat32(0.5), '0.5');
  assert.equal(formatFloat32(2), '2');
});
