/**
 * `nf logprob` and `nf eval`: stream rows through a saved flow in chunks, so inputs larger
 * than memory work. Input columns are matched to the model's by header name (extra
 * columns ignored), or by position without a header.
 */
import { UserError } from '../errors.js';
import { CsvWriter } from '../data/csv-writer.js';
import { checkReadable, openSource, readNumeric, type Layout, type ReadStats } from '../data/csv-reader.js';
import { csvCell, formatFloat32 } from '../data/numbers.js';
import { requestedBackend, startEngine } from '../engine.js';
import { Model } from '../model.js';
import { warn } from '../terminal.js';

export interface ScoreOptions {
  model: string;
  backend?: string;
  header: boolean;
  dropInvalid?: boolean;
  json?: boolean;
  append?: boolean;
}

const CHUNK = 8192;

/** Chooses the model's columns from the input's, or explains why they do not fit. */
function matchColumns(source: string, file: { fileColumns: string[]; hasHeader: boolean }, model: Model): number[] {
  const want = model.meta.columns;
  if (!file.hasHeader) {
    if (file.fileColumns.length !== want.length) {
      throw new UserError(
        `${source}: ${file.fileColumns.length} column(s) without a header, the model has ${want.length} (${want.join(', ')}); add a header to match by name`,
      );
    }
    return want.map((_, i) => i);
  }
  const missing = want.filter((c) => !file.fileColumns.includes(c));
  if (missing.length > 0) {
    throw new UserError(
      `${source}: missing column(s) ${missing.map((c) => `'${c}'`).join(', ')} that the model needs (model columns: ${want.join(', ')}; input: ${file.fileColumns.join(', ')})`,
    );
  }
  return want.map((c) => file.fileColumns.indexOf(c));
}

async function* scoredChunks(
  input: string | undefined,
  opts: ScoreOptions,
  stats: ReadStats,
  model: Model,
  onLayout?: (layout: Layout) => void,
): AsyncGenerator<{ logp: Float32Array; rows: number; raw?: string[][] }> {
  const src = openSource(input);
  const reader = readNumeric(
    src,
    {
      header: opts.header,
      dropInvalid: Boolean(opts.dropInvalid),
      keepRaw: opts.append,
      columnsResolver: (file) => matchColumns(src.name, file, model),
    },
    CHUNK,
    onLayout,
    stats,
  );
  for await (const chunk of reader) yield { logp: model.logProb(chunk.data, chunk.rows), rows: chunk.rows, raw: chunk.raw };
}

async function openModel(opts: ScoreOptions, input: string | undefined): Promise<Model> {
  await checkReadable(input);
  await startEngine(requestedBackend(opts.backend));
  return Model.load(opts.model);
}

export async function logprob(input: string | undefined, opts: ScoreOptions): Promise<number> {
  const model = await openModel(opts, input);
  const out = CsvWriter.toStdout();
  const stats: ReadStats = { rows: 0, dropped: 0 };
  try {
    let headerDone = false;
    const writeHeader = async (layout: Layout | null): Promise<void> => {
      if (headerDone) return;
      headerDone = true;
      const head = opts.append && layout ? [...layout.fileColumns.map(csvCell), 'logprob'] : ['logprob'];
      await out.line(head.join(','));
    };
    let layoutSeen: Layout | null = null;
    for await (const { logp, rows, raw } of scoredChunks(input, opts, stats, model, (l) => (layoutSeen = l))) {
      await writeHeader(layoutSeen);
      for (let i = 0; i < rows; i++) {
        const v = formatFloat32(logp[i]);
        await out.line(raw ? `${raw[i].map(csvCell).join(',')},${v}` : v);
      }
    }
    await writeHeader(layoutSeen);
    await out.close();
  } finally {
    model.dispose();
  }
  if (stats.dropped > 0) await warn(`skipped ${stats.dropped} row(s) with missing or non-finite values (first: ${stats.firstDropped})`);
  return 0;
}

export async function evaluate(input: string | undefined, opts: ScoreOptions): Promise<number> {
  const model = await openModel(opts, input);
  const stats: ReadStats = { rows: 0, dropped: 0 };
  // Welford's running mean/variance in float64.
  let n = 0;
  let mean = 0;
  let m2 = 0;
  try {
    for await (const { logp, rows } of scoredChunks(input, opts, stats, model)) {
      for (let i = 0; i < rows; i++) {
        const x = logp[i];
        n += 1;
        const d = x - mean;
        mean += d / n;
        m2 += d * (x - mean);
      }
    }
  } finally {
    model.dispose();
  }
  if (n === 0) throw new UserError(`${input ?? 'stdin'}: no data rows to evaluate`);
  if (stats.dropped > 0) await warn(`skipped ${stats.dropped} row(s) with missing or non-finite values (first: ${stats.firstDropped})`);
  const D = model.dim;
  const stderr = n > 1 ? Math.sqrt(m2 / (n - 1) / n) : Number.NaN;
  const result = {
    rows: n,
    dim: D,
    meanLogLik: mean,
    stderr,
    natsPerDim: mean / D,
    bitsPerDim: -mean / D / Math.LN2,
    droppedRows: stats.dropped,
  };
  if (opts.json) {
    process.stdout.write(JSON.stringify(result) + '\n');
  } else {
    const fmt = (v: number): string => (Number.isFinite(v) ? Number(v.toPrecision(7)).toString() : 'nan');
    process.stdout.write(
      'rows,dim,mean_loglik,stderr,nats_per_dim,bits_per_dim\n' +
        [n, D, fmt(mean), fmt(stderr), fmt(result.natsPerDim), fmt(result.bitsPerDim)].join(',') +
        '\n',
    );
  }
  return 0;
}
