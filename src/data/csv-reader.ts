/**
 * Streaming CSV → numeric rows. Sniffs the delimiter, detects a header, picks and checks
 * columns, and validates every cell, naming file, line and column in every error.
 * Rows come out in chunks of row-major Float32Arrays so memory stays bounded.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { escapeControls, UsageError, UserError } from '../errors.js';
import { CsvSyntaxError, CsvTokenizer, type Records } from './csv-tokenizer.js';
import { parseCell } from './numbers.js';

const isTextCell = (c: string): boolean => {
  const v = parseCell(c);
  return !v.ok && v.kind === 'text';
};

/**
 * What to do with a row that has a missing, non-finite or too-large value:
 * `fail` refuses the input (after counting all such rows), `skip` leaves the row out,
 * `mark` keeps its place (values zeroed, flagged in `Chunk.invalid`).
 */
export type InvalidRows = 'fail' | 'skip' | 'mark';

export interface ReadOptions {
  /** false: the first row is data. true (default): detect — a first row with any non-numeric cell is a header. */
  header: boolean;
  /** --columns: names or 1-based indices. */
  columns?: string[];
  /** Skip rows with missing / non-finite cells instead of failing (same as invalid: 'skip'). */
  dropInvalid: boolean;
  /** Overrides `dropInvalid`. */
  invalid?: InvalidRows;
  /** How the refusal message tells the user to get past invalid rows. */
  invalidHint?: string;
  /** Keep the raw cells of each row (for `logprob --append`). */
  keepRaw?: boolean;
  /** Picks the columns to read once the file's columns are known (overrides `columns`). */
  columnsResolver?: (file: { fileColumns: string[]; hasHeader: boolean }) => number[];
}

export interface Chunk {
  data: Float32Array;
  rows: number;
  /** Raw cells per row, when keepRaw. */
  raw?: string[][];
  /** Line number in the input of each row, when keepRaw (for messages about single rows). */
  lines?: number[];
  /** With invalid: 'mark', 1 for rows that had an invalid value (their data are zeros). */
  invalid?: Uint8Array;
}

export interface Source {
  /** Name used in messages: the path, or "stdin". */
  name: string;
  stream: Readable;
}

export function openSource(path: string | undefined): Source {
  if (!path || path === '-') return { name: 'stdin', stream: process.stdin };
  const stream = createReadStream(path, { highWaterMark: 1 << 16 });
  return { name: path, stream };
}

/** Fails with a clear message if `path` is not a readable file. */
export async function checkReadable(path: string | undefined): Promise<void> {
  if (!path || path === '-') return;
  try {
    const s = await stat(path);
    if (s.isDirectory()) throw new UserError(`${path}: is a directory, expected a CSV file`);
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw readError(path, err);
  }
}

/** Makes text from a file safe and short enough to quote in a one-line message. */
export function printable(text: string, max = 40): string {
  const clean = escapeControls(text);
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

const DELIMITERS = [',', ';', '\t'] as const;

/** The most frequent of , ; and tab outside quotes in the first non-blank line. */
function sniffDelimiter(text: string): string {
  const line = text.split(/\r\n|\n|\r/).find((l) => l.trim() !== '') ?? '';
  const counts = new Map<string, number>(DELIMITERS.map((d) => [d, 0]));
  let quoted = false;
  for (const ch of line) {
    if (ch === '"') quoted = !quoted;
    else if (!quoted && counts.has(ch)) counts.set(ch, (counts.get(ch) ?? 0) + 1);
  }
  let best = ',';
  for (const d of DELIMITERS) if ((counts.get(d) ?? 0) > (counts.get(best) ?? 0)) best = d;
  return best;
}

/**
 * UTF-16 text (Excel's "Unicode text", PowerShell's default) read as UTF-8 is NUL bytes
 * between characters: say what it is instead of reporting garbled column names.
 */
function checkEncoding(name: string, head: Buffer): void {
  const bom16 = head.length >= 2 && ((head[0] === 0xff && head[1] === 0xfe) || (head[0] === 0xfe && head[1] === 0xff));
  if (bom16) {
    throw new UserError(`${name}: looks like UTF-16 text; nf reads UTF-8 CSV (save it as "CSV UTF-8", or convert with iconv -f UTF-16 -t UTF-8)`);
  }
  if (head.subarray(0, 64).includes(0)) {
    throw new UserError(`${name}: holds NUL bytes: binary data or UTF-16 text, not UTF-8 CSV (UTF-16 converts with iconv -f UTF-16 -t UTF-8)`);
  }
}

/** True once `text` holds a complete non-blank line (enough to sniff the delimiter). */
function hasFirstLine(text: string): boolean {
  // Two linear scans: one regex for both backtracks quadratically on a long line without a break.
  const first = text.search(/\S/);
  return first >= 0 && text.slice(first).search(/[\r\n]/) >= 0;
}

export interface Layout {
  /** Names of all columns in the file. */
  fileColumns: string[];
  /** Indices (into the file's columns) of the columns read, in output order. */
  picked: number[];
  /** Names of the picked columns. */
  columns: string[];
  hasHeader: boolean;
}

function resolveColumns(source: string, fileColumns: string[], wanted: string[] | undefined, hasHeader: boolean): number[] {
  if (!wanted || wanted.length === 0) return fileColumns.map((_, i) => i);
  const picked = wanted.map((w) => {
    const byName = hasHeader ? fileColumns.indexOf(w) : -1;
    if (byName >= 0) return byName;
    if (/^\d+$/.test(w)) {
      const i = Number(w) - 1;
      if (i >= 0 && i < fileColumns.length) return i;
      throw new UserError(`${source}: --columns ${w}: ${i < 0 ? 'column indices start at 1' : `there are only ${fileColumns.length} columns`}`);
    }
    throw new UserError(
      `${source}: --columns: no column named '${printable(w)}'${hasHeader ? ` (columns: ${printable(fileColumns.join(', '), 200)})` : ' (the file has no header; use 1-based indices)'}`,
    );
  });
  // A name and an index can pick the same column (`--columns 3,c`): a bad option value,
  // and a model over two copies of one column would be degenerate.
  const again = picked.findIndex((c, i) => picked.indexOf(c) !== i);
  if (again >= 0) {
    const first = picked.indexOf(picked[again]);
    throw new UsageError(`${source}: --columns ${printable(wanted[first])} and ${printable(wanted[again])} both pick column ${picked[again] + 1}${hasHeader ? ` ('${printable(fileColumns[picked[again]])}')` : ''}`);
  }
  return picked;
}

/** The columns that are read must have distinct, non-empty names (other columns may be anything). */
function checkPickedNames(source: string, line: number, layout: Layout): void {
  if (!layout.hasHeader) return;
  for (const i of layout.picked) {
    const name = layout.fileColumns[i];
    if (name === '') {
      throw new UserError(`${source}:${line}: column ${i + 1} has an empty name in the header; name it, or leave it out with --columns`);
    }
    const first = layout.fileColumns.indexOf(name);
    const second = layout.fileColumns.indexOf(name, first + 1);
    if (second >= 0) throw new UserError(`${source}:${line}: duplicate column name '${printable(name)}' (columns ${first + 1} and ${second + 1})`);
  }
}

function describeColumn(layout: Layout, fileIndex: number): string {
  return layout.hasHeader ? `column '${printable(layout.fileColumns[fileIndex])}' (${fileIndex + 1})` : `column ${fileIndex + 1}`;
}

export interface ReadStats {
  /** Rows delivered (with invalid: 'mark', including the marked ones). */
  rows: number;
  /** Rows with an invalid value that were skipped or marked. */
  dropped: number;
  /** Where the first such row was and why. */
  firstDropped?: string;
}

const MAX_LISTED_LINES = 5;

/**
 * Reads a CSV source as numeric chunks. `onLayout` is called once the columns are known
 * (before the first chunk) and may throw to refuse them.
 */
export async function* readNumeric(
  src: Source,
  opts: ReadOptions,
  chunkRows: number,
  onLayout?: (layout: Layout) => void,
  stats: ReadStats = { rows: 0, dropped: 0 },
): AsyncGenerator<Chunk> {
  const mode: InvalidRows = opts.invalid ?? (opts.dropInvalid ? 'skip' : 'fail');
  const decoder = new StringDecoder('utf8');
  const recs: Records = { fields: [], lines: [] };
  let tokenizer: CsvTokenizer | null = null;
  let start = '';

  let layout: Layout | null = null;
  let width = 0;
  let dim = 0;
  let buf = new Float32Array(0);
  let flags = new Uint8Array(0);
  let raw: string[][] = [];
  let rawLines: number[] = [];
  let n = 0;
  /** In `fail` mode, once an invalid row is seen: keep reading only to count them. */
  let failure: { first: string; rows: number; lines: number[] } | null = null;

  const emit = (): Chunk => ({
    data: n === chunkRows ? buf : buf.subarray(0, n * dim),
    rows: n,
    raw: opts.keepRaw ? raw : undefined,
    lines: opts.keepRaw ? rawLines : undefined,
    invalid: mode === 'mark' ? (n === chunkRows ? flags : flags.subarray(0, n)) : undefined,
  });

  const setUp = (record: string[], lineNo: number): boolean => {
    const looksLikeHeader = opts.header && record.some(isTextCell);
    const fileColumns = looksLikeHeader ? record.map((c) => c.trim()) : record.map((_, i) => `x${i + 1}`);
    const picked = opts.columnsResolver
      ? opts.columnsResolver({ fileColumns, hasHeader: looksLikeHeader })
      : resolveColumns(src.name, fileColumns, opts.columns, looksLikeHeader);
    const l: Layout = { fileColumns, picked, columns: picked.map((i) => fileColumns[i]), hasHeader: looksLikeHeader };
    checkPickedNames(src.name, lineNo, l);
    layout = l;
    width = record.length;
    dim = picked.length;
    onLayout?.(l);
    buf = new Float32Array(chunkRows * dim);
    flags = new Uint8Array(mode === 'mark' ? chunkRows : 0);
    return looksLikeHeader;
  };

  /** Turns the records collected so far into rows, yielding full chunks. */
  function* consume(): Generator<Chunk> {
    const count = recs.fields.length;
    for (let r = 0; r < count; r++) {
      const record = recs.fields[r];
      const lineNo = recs.lines[r];
      if (!layout) {
        if (setUp(record, lineNo)) continue;
      }
      const l = layout as unknown as Layout;
      if (record.length !== width) {
        throw new UserError(
          `${src.name}:${lineNo}: ragged row: ${record.length} field(s), expected ${width} like the ${l.hasHeader ? 'header' : 'first row'}`,
        );
      }
      let bad: string | null = null;
      const at = n * dim;
      for (let j = 0; j < dim; j++) {
        const fi = l.picked[j];
        const cell = parseCell(record[fi]);
        if (cell.ok) {
          buf[at + j] = cell.value;
          continue;
        }
        const text = record[fi].trim();
        const where = `${src.name}:${lineNo}: ${describeColumn(l, fi)}`;
        if (cell.kind === 'text') {
          const decimalComma = /^[+-]?\d*,\d+$/.test(text) ? " (nf reads '.' as the decimal separator)" : '';
          throw new UserError(
            `${where}: '${printable(text)}' is not a number${decimalComma}${l.hasHeader && !decimalComma && !opts.columnsResolver ? '; choose numeric columns with --columns' : ''}`,
          );
        }
        bad ??= `${where}: ${cell.kind === 'overflow' ? `'${printable(text)}' is too large for float32` : text === '' ? 'empty cell' : `missing or non-finite value '${printable(text)}'`}`;
      }
      if (failure) {
        if (bad) {
          failure.rows += 1;
          if (failure.lines.length < MAX_LISTED_LINES) failure.lines.push(lineNo);
        }
        continue;
      }
      if (bad) {
        if (mode === 'fail') {
          failure = { first: bad, rows: 1, lines: [lineNo] };
          continue;
        }
        stats.dropped += 1;
        stats.firstDropped ??= bad;
        if (mode === 'skip') continue;
        buf.fill(0, at, at + dim);
        flags[n] = 1;
      } else if (mode === 'mark') {
        flags[n] = 0;
      }
      if (opts.keepRaw) {
        raw.push(record);
        rawLines.push(lineNo);
      }
      n += 1;
      stats.rows += 1;
      if (n === chunkRows) {
        yield emit();
        buf = new Float32Array(chunkRows * dim);
        if (mode === 'mark') flags = new Uint8Array(chunkRows);
        raw = [];
        rawLines = [];
        n = 0;
      }
    }
    recs.fields.length = 0;
    recs.lines.length = 0;
  }

  try {
    let first = true;
    for await (const piece of src.stream as AsyncIterable<Buffer | string>) {
      if (first && typeof piece !== 'string') checkEncoding(src.name, piece);
      first = false;
      const text = typeof piece === 'string' ? piece : decoder.write(piece);
      if (!tokenizer) {
        start += text;
        if (!hasFirstLine(start) && start.length < 1 << 20) continue;
        tokenizer = new CsvTokenizer(sniffDelimiter(start));
        tokenizer.push(start.replace(/^\uFEFF/, ''), false, recs);
        start = '';
      } else {
        tokenizer.push(text, false, recs);
      }
      yield* consume();
    }
    const rest = decoder.end();
    if (!tokenizer) {
      start += rest;
      if (start.replace(/^\uFEFF/, '').trim() === '') throw new UserError(`${src.name}: empty input (no rows)`);
      tokenizer = new CsvTokenizer(sniffDelimiter(start));
      tokenizer.push(start.replace(/^\uFEFF/, ''), true, recs);
    } else {
      tokenizer.push(rest, true, recs);
    }
    yield* consume();
  } catch (err) {
    if (err instanceof UserError) throw err;
    if (err instanceof CsvSyntaxError) throw new UserError(`${src.name}:${err.line}: malformed CSV: ${err.message}`);
    throw readError(src.name, err);
  }
  if (!layout) throw new UserError(`${src.name}: empty input (no rows)`);
  const f = failure as { first: string; rows: number; lines: number[] } | null;
  if (f) {
    const more = f.rows > f.lines.length ? ', …' : '';
    const hint = opts.invalidHint ?? 'use --drop-invalid to skip such rows';
    throw new UserError(
      f.rows === 1
        ? `${f.first} (${hint})`
        : `${f.first}; ${f.rows} rows have missing, non-finite or too-large values (lines ${f.lines.join(', ')}${more}); ${hint}`,
    );
  }
  if (n > 0) yield emit();
}

function readError(name: string, err: unknown): UserError {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'ENOENT') return new UserError(`${name}: no such file`);
  if (e.code === 'EISDIR') return new UserError(`${name}: is a directory, expected a CSV file`);
  if (e.code === 'EACCES') return new UserError(`${name}: permission denied`);
  if (e.code === 'ENOTDIR') return new UserError(`${name}: no such file (a parent is not a directory)`);
  return new UserError(`${name}: cannot read: ${e.message ?? String(err)}`);
}

export interface Table {
  columns: string[];
  layout: Layout;
  data: Float32Array;
  rows: number;
  stats: ReadStats;
}

/** Reads a whole source into memory (for `fit`). */
export async function readTable(src: Source, opts: ReadOptions): Promise<Table> {
  const stats: ReadStats = { rows: 0, dropped: 0 };
  let layout: Layout | null = null;
  const parts: Float32Array[] = [];
  for await (const chunk of readNumeric(src, opts, 16384, (l) => (layout = l), stats)) parts.push(chunk.data.slice());
  const l = layout as Layout | null;
  if (!l) throw new UserError(`${src.name}: empty input (no rows)`);
  const data = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) {
    data.set(p, off);
    off += p.length;
  }
  return { columns: l.columns, layout: l, data, rows: stats.rows, stats };
}
