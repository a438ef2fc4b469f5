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
  await assert.rejects(read('a,b\n1,\n'), /in.csv:2: column 'b' \(2\): empty cell/);
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

test('tokenizer: random quoted CSV round-trips at every chunking, with the right line numbers', async () => {
  const { CsvTokenizer } = await import('../dist/data/csv-tokenizer.js');
  let seed = 12345;
  const rnd = (n) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return Math.floor((seed / 2147483648) * n);
  };
  const alphabet = ['a', '1', '.', ',', ';', '"', '\n', '\r\n', '\r', ' ', '\t', 'é', '𝔵'];
  for (let round = 0; round < 200; round++) {
    const delimiter = [',', ';', '\t'][round % 3];
    const records = [];
    const startLines = [];
    let text = '';
    let line = 1;
    for (let r = 0, nr = 1 + rnd(6); r < nr; r++) {
      const fields = [];
      for (let f = 0, nf = 2 + rnd(3); f < nf; f++) {
        let v = '';
        for (let c = 0, nc = rnd(5); c < nc; c++) v += alphabet[rnd(alphabet.length)];
        fields.push(v);
      }
      records.push(fields);
      startLines.push(line);
      const cells = fields.map((v) => (/["\r\n,;\t ]/.test(v) || v === '' || rnd(4) === 0 ? `"${v.replace(/"/g, '""')}"` : v));
      const rec = cells.join(delimiter);
      line += (rec.match(/\r\n|\r|\n/g) ?? []).length + 1;
      text += rec + ['\n', '\r\n'][rnd(2)];
      if (rnd(5) === 0) {
        text += '\n';
        line += 1;
      }
    }
    for (const size of [1, 2, 3, 7, 64, text.length]) {
      const tok = new CsvTokenizer(delimiter);
      const out = { fields: [], lines: [] };
      for (let i = 0; i < text.length; i += size) tok.push(text.slice(i, i + size), false, out);
      tok.push('', true, out);
      assert.deepEqual(out.fields, records, `${JSON.stringify(text)} in pieces of ${size}`);
      assert.deepEqual(out.lines, startLines, `line numbers of ${JSON.stringify(text)}`);
    }
  }
});

test('tokenizer: CR-only line ends, spaces around quotes, unclosed and stray quotes', async () => {
  const { CsvTokenizer } = await import('../dist/data/csv-tokenizer.js');
  const all = (text, delimiter = ',') => {
    const tok = new CsvTokenizer(delimiter);
    const out = { fields: [], lines: [] };
    tok.push(text, true, out);
    return out;
  };
  assert.deepEqual(all('a,b\r1,2\r3,4').fields, [['a', 'b'], ['1', '2'], ['3', '4']]);
  assert.deepEqual(all('a,b\r1,2\r3,4').lines, [1, 2, 3]);
  assert.deepEqual(all(' "x" , "y"\n').fields, [['x', 'y']]);
  assert.deepEqual(all('a,b\n  \n\t\n1,2\n').lines, [1, 4]);
  assert.throws(() => all('a,b\n1,"2\n3,4\n'), (e) => e.line === 2 && /not closed/.test(e.message));
  assert.throws(() => all('a,b\n1,2"x\n'), (e) => e.line === 2 && /quote inside an unquoted field/.test(e.message));
  assert.throws(() => all('a,b\n1,"2"x\n'), (e) => e.line === 2 && /after a closing quote/.test(e.message));
});
