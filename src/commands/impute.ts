/**
 * `nf impute`: fills missing cells (empty, NA, NaN) with draws from the flow's
 * conditional density p(x_missing | x_observed), streaming the input in chunks.
 * Observed cells are written back exactly as they were read; rows without gaps pass
 * through; rows with every model cell missing get plain model draws.
 */
import { CsvWriter } from '../data/csv-writer.js';
import { checkReadable, openSource, readNumeric, type Layout, type ReadStats } from '../data/csv-reader.js';
import { csvCell, formatFloat32 } from '../data/numbers.js';
import { requestedBackend, startEngine } from '../engine.js';
import { readRowCells } from '../impute/cells.js';
import { modelColumnsIn } from '../data/model-columns.js';
import { imputeRows, type Density, type SamplerSettings } from '../impute/sampler.js';
import { Model } from '../model.js';
import { Rng, freshSeed } from '../rng.js';
import { note } from '../terminal.js';

/** Added to the missing-columns message: empty cells are fine, absent columns are not. */
const IMPUTE_HINT = '; a column of empty cells is imputed, a column that is not there is not';

export interface ImputeOptions {
  model: string;
  backend?: string;
  header: boolean;
  /** -k: draws per row, output as consecutive rows with a `draw` column. */
  draws?: number;
  mean?: boolean;
  seed?: number;
  burnIn: number;
  thin: number;
  output?: string;
}

/** Draws per row that --mean averages when -k is not given. */
const MEAN_DRAWS = 100;
const MAX_CHAINS = 10;
/** Chain rows per chunk: one log-density call per sweep evaluates this many rows. */
const CHAINS_PER_CHUNK = 8192;
const MAX_BATCH = 16384;
const CANDIDATES = 64;
/** Bound on the float cells a chunk holds in its larger buffers. */
const MAX_CELLS = 4_000_000;

function densityOf(model: Model): Density {
  const D = model.dim;
  return {
    dim: D,
    mean: model.meta.standardization.mean,
    std: model.meta.standardization.std,
    logDensity(rows, n) {
      if (n <= MAX_BATCH) return model.logProb(rows, n);
      const out = new Float32Array(n);
      for (let at = 0; at < n; at += MAX_BATCH) {
        const m = Math.min(MAX_BATCH, n - at);
        out.set(model.logProb(rows.subarray(at * D, (at + m) * D), m), at);
      }
      return out;
    },
    sample: (n, rng) => model.sample(n, 1, rng),
  };
}

interface Tally {
  rows: number;
  complete: number;
  allMissing: number;
  cells: number;
  acceptedWeighted: number;
  jumpsWeighted: number;
  sampledRows: number;
}

export async function impute(input: string | undefined, opts: ImputeOptions): Promise<number> {
  await checkReadable(input);
  await startEngine(requestedBackend(opts.backend));
  const model = await Model.load(opts.model);
  let out: CsvWriter;
  try {
    out = opts.output && opts.output !== '-' ? await CsvWriter.toFile(opts.output) : CsvWriter.toStdout();
  } catch (err) {
    model.dispose();
    throw err;
  }
  const k = opts.draws ?? (opts.mean ? MEAN_DRAWS : 1);
  const drawColumn = opts.draws !== undefined && !opts.mean;
  const copies = opts.mean ? 1 : k;
  const settings: SamplerSettings = {
    chains: Math.min(k, MAX_CHAINS),
    draws: k,
    burnIn: opts.burnIn,
    thin: opts.thin,
    candidates: CANDIDATES,
    keepDraws: !opts.mean,
  };
  const D = model.dim;
  // Rows per chunk: enough chains for one efficient batched call per sweep, while the
  // draws kept (rows × k × D) and the starting candidates (rows × 64 × D) stay small.
  const chunkRows = Math.max(
    1,
    Math.min(Math.floor(CHAINS_PER_CHUNK / settings.chains), Math.floor(MAX_CELLS / (copies * D)), Math.floor(MAX_CELLS / (CANDIDATES * D))),
  );
  const rng = new Rng(opts.seed ?? freshSeed());
  const density = densityOf(model);
  const src = openSource(input);
  const stats: ReadStats = { rows: 0, dropped: 0 };
  const tally: Tally = { rows: 0, complete: 0, allMissing: 0, cells: 0, acceptedWeighted: 0, jumpsWeighted: 0, sampledRows: 0 };
  let layout: Layout | null = null;
  let headerDone = false;
  const writeHeader = async (): Promise<void> => {
    if (headerDone || !layout) return;
    headerDone = true;
    if (layout.hasHeader) await out.line([...layout.fileColumns.map(csvCell), ...(drawColumn ? ['draw'] : [])].join(','));
  };

  try {
    const reader = readNumeric(
      src,
      { header: opts.header, dropInvalid: false, invalid: 'mark', keepRaw: true, columnsResolver: (file) => modelColumnsIn(src.name, file, model.meta.columns, IMPUTE_HINT) },
      chunkRows,
      (l) => (layout = l),
      stats,
    );
    for await (const chunk of reader) {
      await writeHeader();
      const l = layout as unknown as Layout;
      const raw = chunk.raw ?? [];
      const n = chunk.rows;
      const values = new Float32Array(n * D);
      const missing = new Uint8Array(n * D);
      const gaps = new Int32Array(n);
      const lines = chunk.lines ?? [];
      for (let r = 0; r < n; r++) {
        gaps[r] = readRowCells(
          raw[r],
          l.picked,
          values,
          missing,
          r * D,
          () => `${src.name}:${lines[r]}`,
          (i) => (l.hasHeader ? `column '${l.fileColumns[i]}'` : `column ${i + 1}`),
        );
      }
      tally.rows += n;
      const filled = fill(density, values, missing, gaps, n, settings, Boolean(opts.mean), rng, tally);
      for (let r = 0; r < n; r++) {
        for (let q = 0; q < copies; q++) {
          const cells = raw[r].map(csvCell);
          if (gaps[r] > 0) {
            const row = filled.get(r) as Float32Array | Float64Array;
            for (let j = 0; j < D; j++) if (missing[r * D + j]) cells[l.picked[j]] = formatFloat32(row[q * D + j]);
          }
          if (drawColumn) cells.push(String(q + 1));
          await out.line(cells.join(','));
        }
      }
    }
    await writeHeader();
    await out.close();
  } catch (err) {
    await out.abort();
    throw err;
  } finally {
    model.dispose();
  }
  const rate = (v: number): string => (v / tally.sampledRows).toFixed(2);
  const acc = tally.sampledRows > 0 ? `; acceptance ${rate(tally.acceptedWeighted)} (random walk), ${rate(tally.jumpsWeighted)} (jumps)` : '';
  if (tally.cells === 0) note(`no missing cells in ${tally.rows} row(s); passed them through`);
  else note(`imputed ${tally.cells} cell(s) in ${tally.rows - tally.complete} of ${tally.rows} row(s) (${tally.allMissing} with every model column missing)${acc}`);
  return 0;
}

/**
 * Imputes the rows of one chunk that have gaps. Returns, per such row, `copies` whole
 * rows (row-major): k draws, or the one posterior-mean row with --mean.
 */
function fill(
  density: Density,
  values: Float32Array,
  missing: Uint8Array,
  gaps: Int32Array,
  n: number,
  s: SamplerSettings,
  meanOnly: boolean,
  rng: Rng,
  tally: Tally,
): Map<number, Float32Array | Float64Array> {
  const D = density.dim;
  const result = new Map<number, Float32Array | Float64Array>();
  const partial: number[] = [];
  const empty: number[] = [];
  for (let r = 0; r < n; r++) {
    if (gaps[r] === 0) tally.complete += 1;
    else if (gaps[r] === D) empty.push(r);
    else partial.push(r);
    tally.cells += gaps[r];
  }
  tally.allMissing += empty.length;

  // Nothing observed: the conditional is the model itself.
  if (empty.length > 0) {
    const x = density.sample(empty.length * s.draws, rng);
    empty.forEach((r, i) => {
      const draws = x.subarray(i * s.draws * D, (i + 1) * s.draws * D);
      if (!meanOnly) {
        result.set(r, draws);
        return;
      }
      const avg = new Float64Array(D);
      for (let q = 0; q < s.draws; q++) for (let j = 0; j < D; j++) avg[j] += draws[q * D + j] / s.draws;
      result.set(r, avg);
    });
  }
  if (partial.length > 0) {
    const P = partial.length;
    const pv = new Float32Array(P * D);
    const pm = new Uint8Array(P * D);
    partial.forEach((r, i) => {
      pv.set(values.subarray(r * D, r * D + D), i * D);
      pm.set(missing.subarray(r * D, r * D + D), i * D);
    });
    const res = imputeRows(density, { rows: P, values: pv, missing: pm }, s, rng);
    partial.forEach((r, i) => {
      result.set(r, meanOnly ? res.mean.subarray(i * D, i * D + D) : res.draws.subarray(i * s.draws * D, (i + 1) * s.draws * D));
    });
    if (Number.isFinite(res.acceptance)) {
      tally.acceptedWeighted += res.acceptance * P;
      tally.jumpsWeighted += (Number.isFinite(res.jumpAcceptance) ? res.jumpAcceptance : 0) * P;
      tally.sampledRows += P;
    }
  }
  return result;
}
