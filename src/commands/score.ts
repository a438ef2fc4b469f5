/**
 * `nf logprob` and `nf eval`: stream rows through a saved flow in chunks, so inputs larger
 * than memory work. Input columns are matched to the model's by header name (extra
 * columns ignored), or by position without a header.
 */
import { UserError } from '../errors.js';
import { CsvWriter } from '../data/csv-writer.js';
import { checkReadable, openSource, readNumeric, type InvalidRows, type Layout, type ReadStats } from '../data/csv-reader.js';
import { csvCell, formatFloat32 } from '../data/numbers.js';
import { modelColumnsIn } from '../data/model-columns.js';
import { loadCheckpoint, type ModelMeta } from '../checkpoint.js';
import { requestedBackend, startEngine, type BackendName } from '../engine.js';
import { Model } from '../model.js';
import { ChunkRunner, helperWanted, inOrder } from '../inference/helper.js';
import { warn } from '../terminal.js';
import { rarity } from '../rarity.js';

/** Rarity to 6 decimals: enough to rank, short enough to read. */
function formatRarity(r: number): string {
  return Number.isNaN(r) ? 'nan' : String(Number(r.toFixed(6)));
}

export interface ScoreOptions {
  model: string;
  backend?: string;
  header: boolean;
  dropInvalid?: boolean;
  json?: boolean;
  append?: boolean;
  /** logprob: add a `rarity` column (fraction of training rows with lower density). */
  rarity?: boolean;
}

/** The training log-density quantiles a checkpoint stores for --rarity, validated. */
function rarityReference(meta: ModelMeta, model: string): number[] {
  const q = (meta.training as unknown as { logprobQuantiles?: unknown }).logprobQuantiles;
  if (q === undefined) {
    throw new UserError(`${model}: this checkpoint has no training log-density reference for --rarity (refit it with this nf; reverse-KL fits have none)`);
  }
  const ok = Array.isArray(q) && q.length >= 2 && q.every((v, i) => typeof v === 'number' && Number.isFinite(v) && (i === 0 || v >= (q[i - 1] as number)));
  if (!ok) throw new UserError(`${model}/model.json: training.logprobQuantiles must be an ascending list of finite numbers`);
  return q as number[];
}

const CHUNK = 8192;

async function* scoredChunks(
  input: string | undefined,
  opts: ScoreOptions,
  invalid: { mode: InvalidRows; hint: string },
  stats: ReadStats,
  model: LazyModel,
  onLayout?: (layout: Layout) => void,
): AsyncGenerator<{ logp: Float32Array; rows: number; raw?: string[][]; invalid?: Uint8Array }> {
  const src = openSource(input);
  const reader = readNumeric(
    src,
    {
      header: opts.header,
      dropInvalid: invalid.mode === 'skip',
      invalid: invalid.mode,
      invalidHint: invalid.hint,
      keepRaw: opts.append,
      columnsResolver: (file) => modelColumnsIn(src.name, file, model.meta.columns),
    },
    CHUNK,
    onLayout,
    stats,
  );
  for await (const { chunk, out } of inOrder(reader, async (c) => (await model.get()).submit('logprob', c.data, c.rows))) {
    yield { logp: out, rows: chunk.rows, raw: chunk.raw, invalid: chunk.invalid };
  }
}

/**
 * The checkpoint is read and validated first, but TensorFlow.js starts only when there
 * is a first chunk to score: bad input is refused in a fraction of a second.
 */
class LazyModel {
  private model: Model | null = null;
  private runner: ChunkRunner | null = null;
  private starting: Promise<ChunkRunner> | null = null;

  private constructor(
    readonly meta: ModelMeta,
    private readonly params: Float32Array,
    private readonly backend: BackendName | undefined,
  ) {}

  static async open(opts: ScoreOptions, input: string | undefined): Promise<LazyModel> {
    const backend = requestedBackend(opts.backend);
    await checkReadable(input);
    const { meta, params } = await loadCheckpoint(opts.model);
    return new LazyModel(meta, params, backend);
  }

  get dim(): number {
    return this.meta.flow.dim;
  }

  /** One start shared by every caller: chunks may ask while the engine is still loading. */
  get(): Promise<ChunkRunner> {
    this.starting ??= this.start();
    return this.starting;
  }

  private async start(): Promise<ChunkRunner> {
    const engine = await startEngine(this.backend);
    this.model = Model.fromParams(this.meta, this.params);
    const init = helperWanted(engine.backend) ? { backend: engine.backend, meta: this.meta, params: this.params } : null;
    this.runner = new ChunkRunner(this.model, init);
    return this.runner;
  }

  async dispose(): Promise<void> {
    await this.starting?.catch(() => undefined);
    await this.runner?.close();
    this.model?.dispose();
  }
}

export async function logprob(input: string | undefined, opts: ScoreOptions): Promise<number> {
  const model = await LazyModel.open(opts, input);
  const reference = opts.rarity ? rarityReference(model.meta, opts.model) : null;
  const out = CsvWriter.toStdout();
  const stats: ReadStats = { rows: 0, dropped: 0 };
  // One output row per input row: with --drop-invalid, rows that cannot be scored keep
  // their place with logprob `nan` (not an empty cell: without --append that would be a
  // blank line, which CSV readers — pandas, nf itself — skip, breaking the alignment).
  const invalid = { mode: opts.dropInvalid ? ('mark' as const) : ('fail' as const), hint: 'use --drop-invalid to give such rows logprob nan' };
  try {
    let headerDone = false;
    const writeHeader = async (layout: Layout | null): Promise<void> => {
      if (headerDone) return;
      headerDone = true;
      const head = opts.append && layout ? [...layout.fileColumns.map(csvCell), 'logprob'] : ['logprob'];
      if (reference) head.push('rarity');
      await out.line(head.join(','));
    };
    let layoutSeen: Layout | null = null;
    for await (const chunk of scoredChunks(input, opts, invalid, stats, model, (l) => (layoutSeen = l))) {
      await writeHeader(layoutSeen);
      const { logp, rows, raw } = chunk;
      for (let i = 0; i < rows; i++) {
        const bad = chunk.invalid?.[i];
        let v = bad ? 'nan' : formatFloat32(logp[i]);
        if (reference) v += `,${bad ? 'nan' : formatRarity(rarity(reference, logp[i]))}`;
        await out.line(raw ? `${raw[i].map(csvCell).join(',')},${v}` : v);
      }
    }
    await writeHeader(layoutSeen);
    await out.close();
  } finally {
    await model.dispose();
  }
  if (stats.dropped > 0) {
    await warn(`${stats.dropped} row(s) with missing or non-finite values got logprob nan (first: ${stats.firstDropped})`);
  }
  return 0;
}

export async function evaluate(input: string | undefined, opts: ScoreOptions): Promise<number> {
  const model = await LazyModel.open(opts, input);
  const stats: ReadStats = { rows: 0, dropped: 0 };
  // Welford's running mean/variance in float64.
  let n = 0;
  let mean = 0;
  let m2 = 0;
  // Rows the model gives zero density (log density −inf, e.g. far outside the data) make
  // the mean −inf; kept out of Welford's sums, where −inf − −inf would turn it into NaN.
  let zeroDensity = 0;
  try {
    const invalid = { mode: opts.dropInvalid ? ('skip' as const) : ('fail' as const), hint: 'use --drop-invalid to leave such rows out' };
    for await (const { logp, rows } of scoredChunks(input, opts, invalid, stats, model)) {
      for (let i = 0; i < rows; i++) {
        const x = logp[i];
        if (x === Number.NEGATIVE_INFINITY) {
          zeroDensity += 1;
          continue;
        }
        n += 1;
        const d = x - mean;
        mean += d / n;
        m2 += d * (x - mean);
      }
    }
  } finally {
    await model.dispose();
  }
  const rows = n + zeroDensity;
  if (rows === 0) {
    const name = input && input !== '-' ? input : 'stdin';
    throw new UserError(
      stats.dropped > 0
        ? `${name}: no rows left to evaluate (--drop-invalid skipped all ${stats.dropped})`
        : `${name}: no data rows to evaluate (only a header)`,
    );
  }
  if (stats.dropped > 0) await warn(`skipped ${stats.dropped} row(s) with missing or non-finite values (first: ${stats.firstDropped})`);
  if (zeroDensity > 0) {
    await warn(`${zeroDensity} row(s) have zero density under the model (log density -inf), so the mean log-likelihood is -inf`);
    mean = Number.NEGATIVE_INFINITY;
  }
  const D = model.dim;
  const stderr = zeroDensity === 0 && n > 1 ? Math.sqrt(m2 / (n - 1) / n) : Number.NaN;
  const result = {
    rows,
    dim: D,
    meanLogLik: mean,
    stderr,
    natsPerDim: mean / D,
    bitsPerDim: -mean / D / Math.LN2,
    droppedRows: stats.dropped,
    zeroDensityRows: zeroDensity,
  };
  const out = CsvWriter.toStdout();
  if (opts.json) {
    await out.line(JSON.stringify(result));
  } else {
    // Like every number nf writes: enough digits to round-trip float32 (the contract).
    const figures = [mean, stderr, result.natsPerDim, result.bitsPerDim].map(formatFloat32);
    await out.line('rows,dim,mean_loglik,stderr,nats_per_dim,bits_per_dim');
    await out.line([rows, D, ...figures].join(','));
  }
  await out.close();
  return 0;
}
