/**
 * Streaming CSV → numeric rows. Sniffs the delimiter, detects a header, picks and checks
 * columns, and validates every cell, naming file, line and column in every error.
 * Rows come out in chunks of row-major Float32Arrays so memory stays bounded.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { parse, type Parser } from 'csv-parse';
import { UserError } from '../errors.js';
import { parseCell } from './numbers.js';

const isTextCell = (c: string): boolean => {
  const v = parseCell(c);
  return !v.ok && v.kind === 'text';
};

export interface ReadOptions {
  /** false: the first row is data. true (default): detect — a first row with any non-numeric cell is a header. */
  header: boolean;
  /** --columns: names or 1-based indices. */
  columns?: string[];
  /** Skip rows with missing / non-finite cells instead of failing. */
  dropInvalid: boolean;
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
}

export interface Source {
  /** Name used in messages: the path, or "stdin". */
  name: string;
  stream: Readable;
}

export function openSource(path: string | undefined): Source {
  if (!path || path === '-') return { name: 'stdin', stream: process.stdin };
  const stream = createReadStream(path);
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
    const code = (err as NodeJS.ErrnoException).code;
    throw new UserError(`${path}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message}`);
  }
}

function sniffDelimiter(firstLine: string): string {
  const counts: Record<string, number> = { ',': 0, ';': 0, '\t': 0 };
  let quoted = false;
  for (const ch of firstLine) {
    if (ch === '"') quoted = !quoted;
    else if (!quoted && ch in counts) counts[ch]++;
  }
  let best = ',';
  for (const d of [';', '\t']) if (counts[d] > counts[best]) best = d;
  return best;
}

/**
 * Reads until the first line break so the delimiter can be sniffed. Uses the stream's
 * iterator by hand: breaking out of `for await` would destroy the stream.
 */
async function peekFirstLine(it: AsyncIterator<Buffer | string>): Promise<{ head: Buffer[]; line: string; done: boolean }> {
  const head: Buffer[] = [];
  let text = '';
  for (;;) {
    const r = await it.next();
    if (r.done) return { head, line: firstLineOf(text), done: true };
    const buf = typeof r.value === 'string' ? Buffer.from(r.value) : r.value;
    head.push(buf);
    text += buf.toString('utf8');
    if (/[\r\n]/.test(text) || text.length > 1 << 20) return { head, line: firstLineOf(text), done: false };
  }
}

function firstLineOf(text: string): string {
  return text.split(/\r?\n|\r/)[0].replace(/^\uFEFF/, '');
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
  return wanted.map((w) => {
    const byName = hasHeader ? fileColumns.indexOf(w) : -1;
    if (byName >= 0) return byName;
    if (/^\d+$/.test(w)) {
      const i = Number(w) - 1;
      if (i >= 0 && i < fileColumns.length) return i;
      throw new UserError(`${source}: --columns ${w}: there are only ${fileColumns.length} columns`);
    }
    throw new UserError(
      `${source}: --columns: no column named '${w}'${hasHeader ? ` (columns: ${fileColumns.join(', ')})` : ' (the file has no header; use 1-based indices)'}`,
    );
  });
}

function describeColumn(layout: Layout, fileIndex: number): string {
  return layout.hasHeader ? `column '${layout.fileColumns[fileIndex]}' (${fileIndex + 1})` : `column ${fileIndex + 1}`;
}

export interface ReadStats {
  rows: number;
  dropped: number;
  /** Line of the first dropped row and why. */
  firstDropped?: string;
}

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
  const it = src.stream[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  let peeked: Awaited<ReturnType<typeof peekFirstLine>>;
  try {
    peeked = await peekFirstLine(it);
  } catch (err) {
    throw readError(src.name, err);
  }
  const { head, line, done } = peeked;
  if (head.every((b) => b.toString('utf8').replace(/^\uFEFF/, '').trim() === '') && done) {
    throw new UserError(`${src.name}: empty input (no rows)`);
  }
  const delimiter = sniffDelimiter(line);
  const parser: Parser = parse({
    delimiter,
    bom: true,
    info: true,
    skip_empty_lines: true,
    relax_column_count: false,
    relax_quotes: false,
  });
  // Feed the peeked bytes, then the rest of the stream, into the parser.
  const feed = (async () => {
    for (const b of head) if (!parser.write(b)) await new Promise((r) => parser.once('drain', r));
    if (!done) {
      for (let r = await it.next(); !r.done; r = await it.next()) {
        if (!parser.write(r.value)) await new Promise((resolve) => parser.once('drain', resolve));
      }
    }
    parser.end();
  })();
  let feedError: unknown = null;
  feed.catch((err: unknown) => {
    feedError = err;
    parser.destroy(err instanceof Error ? err : new Error(String(err)));
  });

  let layout: Layout | null = null;
  let dim = 0;
  let buf = new Float32Array(0);
  let raw: string[][] = [];
  let n = 0;
  try {
    for await (const item of parser as AsyncIterable<{ record: string[]; info: { lines: number } }>) {
      const { record, info } = item;
      const lineNo = info.lines;
      if (!layout) {
        const looksLikeHeader = opts.header && record.some(isTextCell);
        const fileColumns = looksLikeHeader ? record.map((c) => c.trim()) : record.map((_, i) => `x${i + 1}`);
        if (looksLikeHeader) {
          const seen = new Map<string, number>();
          fileColumns.forEach((c, i) => {
            if (c === '') throw new UserError(`${src.name}:${lineNo}: column ${i + 1} has an empty name in the header`);
            const prev = seen.get(c);
            if (prev !== undefined) throw new UserError(`${src.name}:${lineNo}: duplicate column name '${c}' (columns ${prev + 1} and ${i + 1})`);
            seen.set(c, i);
          });
        }
        const picked = opts.columnsResolver
          ? opts.columnsResolver({ fileColumns, hasHeader: looksLikeHeader })
          : resolveColumns(src.name, fileColumns, opts.columns, looksLikeHeader);
        layout = { fileColumns, picked, columns: picked.map((i) => fileColumns[i]), hasHeader: looksLikeHeader };
        dim = picked.length;
        onLayout?.(layout);
        buf = new Float32Array(chunkRows * dim);
        if (looksLikeHeader) continue;
      }
      let bad: string | null = null;
      for (let j = 0; j < dim; j++) {
        const fi = layout.picked[j];
        const cell = parseCell(record[fi]);
        if (cell.ok) {
          buf[n * dim + j] = cell.value;
          continue;
        }
        const where = `${src.name}:${lineNo}: ${describeColumn(layout, fi)}`;
        if (cell.kind === 'text') {
          throw new UserError(`${where}: '${record[fi].trim().slice(0, 40)}' is not a number${layout.hasHeader ? '; choose numeric columns with --columns' : ''}`);
        }
        const what = cell.kind === 'overflow' ? `'${record[fi].trim()}' is too large for float32` : `missing or non-finite value '${record[fi].trim()}'`;
        if (!opts.dropInvalid) throw new UserError(`${where}: ${what} (use --drop-invalid to skip such rows)`);
        bad = `${where}: ${what}`;
        break;
      }
      if (bad) {
        stats.dropped += 1;
        stats.firstDropped ??= bad;
        continue;
      }
      if (opts.keepRaw) raw.push(record);
      n += 1;
      stats.rows += 1;
      if (n === chunkRows) {
        yield { data: buf, rows: n, raw: opts.keepRaw ? raw : undefined };
        buf = new Float32Array(chunkRows * dim);
        raw = [];
        n = 0;
      }
    }
  } catch (err) {
    if (err instanceof UserError) throw err;
    if (feedError) throw readError(src.name, feedError);
    throw csvError(src.name, err);
  } finally {
    parser.destroy();
  }
  if (feedError) throw readError(src.name, feedError);
  if (!layout) throw new UserError(`${src.name}: empty input (no rows)`);
  if (n > 0) yield { data: buf.subarray(0, n * dim), rows: n, raw: opts.keepRaw ? raw : undefined };
}

function readError(name: string, err: unknown): UserError {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'ENOENT') return new UserError(`${name}: no such file`);
  if (e.code === 'EISDIR') return new UserError(`${name}: is a directory, expected a CSV file`);
  return new UserError(`${name}: cannot read: ${e.message ?? String(err)}`);
}

function csvError(name: string, err: unknown): UserError {
  const e = err as Error & { code?: string; lines?: number; record?: string[] };
  if (e.code === 'CSV_RECORD_INCONSISTENT_FIELDS_LENGTH' || e.code === 'CSV_RECORD_DONT_MATCH_COLUMNS_LENGTH') {
    return new UserError(`${name}:${e.lines ?? '?'}: ragged row: ${e.record?.length ?? '?'} fields where the first row has a different count`);
  }
  if (e.code?.startsWith('CSV_')) return new UserError(`${name}:${e.lines ?? '?'}: malformed CSV: ${e.message.replace(/^Invalid [^:]*: /, '')}`);
  return readError(name, err);
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
