/**
 * From a numeric table to training inputs: validation split, optional dequantisation,
 * and standardisation with the training rows' statistics.
 */
import { UserError } from '../errors.js';
import type { Standardization } from '../flow/flow.js';
import type { Rng } from '../rng.js';
import type { Table } from '../data/csv-reader.js';

export const MIN_ROWS = 10;
/** Fewer validation rows than this make early stopping noise (warned when the data allow more). */
const FEW_VAL_ROWS = 20;

export interface Prepared {
  train: Float32Array;
  val: Float32Array;
  trainRows: number;
  valRows: number;
  standardization: Standardization;
  /** Columns that got uniform dequantisation noise. */
  dequantized: string[];
}

export interface PrepareOptions {
  valSplit: number;
  dequantize: boolean;
  rng: Rng;
  warn: (message: string) => Promise<void> | void;
}

function integerColumns(data: Float32Array, rows: number, dim: number): boolean[] {
  const out = new Array<boolean>(dim).fill(true);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < dim; j++) {
      const x = data[i * dim + j];
      // Every float32 from 2^24 up is an integer: such a value says nothing either way,
      // and a column of them (timestamps, say) is not called integer-valued.
      if (out[j] && (!Number.isInteger(x) || Math.abs(x) >= 2 ** 24)) out[j] = false;
    }
  }
  return out;
}

export async function prepareData(source: string, table: Table, opts: PrepareOptions): Promise<Prepared> {
  const { rows, columns } = table;
  const D = columns.length;
  if (D < 2) {
    throw new UserError(
      `${source}: nf needs at least 2 numeric columns, got ${D}${D === 1 ? ` ('${columns[0]}')` : ''}: coupling flows transform one half of the columns conditioned on the other`,
    );
  }
  if (rows < MIN_ROWS) {
    const dropped = table.stats.dropped;
    const what =
      rows === 0 && dropped === 0
        ? table.layout.hasHeader
          ? 'a header but no data rows'
          : 'no data rows'
        : dropped > 0
          ? `${rows} data row(s) left after --drop-invalid skipped ${dropped}`
          : `only ${rows} data row(s)`;
    throw new UserError(`${source}: ${what}; nf needs at least ${MIN_ROWS} rows to fit and validate a flow`);
  }
  const data = table.data;

  const ints = integerColumns(data, rows, D);
  const intNames = columns.filter((_, j) => ints[j]);
  const dequantized: string[] = [];
  if (intNames.length > 0) {
    if (opts.dequantize) {
      // Uniform dequantisation: x + u, u ~ U[0,1). Log-likelihoods then bound the discrete ones from below.
      for (let i = 0; i < rows; i++) for (let j = 0; j < D; j++) if (ints[j]) data[i * D + j] += opts.rng.uniform();
      dequantized.push(...intNames);
    }
  }

  // Shuffled split so a sorted file does not put one region only in validation.
  const order = opts.rng.permutation(rows);
  const valRows = Math.max(1, Math.round(rows * opts.valSplit));
  const trainRows = rows - valRows;
  if (trainRows < 2) throw new UserError(`${source}: --val-split ${opts.valSplit} leaves ${trainRows} training row(s)`);
  const train = new Float32Array(trainRows * D);
  const val = new Float32Array(valRows * D);
  for (let r = 0; r < rows; r++) {
    const src = order[r] * D;
    const dst = r < trainRows ? train : val;
    const at = (r < trainRows ? r : r - trainRows) * D;
    for (let j = 0; j < D; j++) dst[at + j] = data[src + j];
  }

  // Mean and population std of the training rows, in float64.
  const mean = new Array<number>(D).fill(0);
  const m2 = new Array<number>(D).fill(0);
  for (let i = 0; i < trainRows; i++) {
    for (let j = 0; j < D; j++) {
      const x = train[i * D + j];
      const d = x - mean[j];
      mean[j] += d / (i + 1);
      m2[j] += d * (x - mean[j]);
    }
  }
  const std = m2.map((v) => Math.sqrt(v / trainRows));
  std.forEach((s, j) => {
    // Relative to the column's magnitude, so tiny-valued columns are not called constant.
    if (!(s > 0 && s > 1e-12 * Math.abs(mean[j]))) {
      throw new UserError(
        `${source}: column '${columns[j]}' is constant (${mean[j]}) in the training rows: a density over it is degenerate; leave it out with --columns`,
      );
    }
  });
  for (const arr of [train, val]) {
    for (let i = 0; i < arr.length; i++) {
      const j = i % D;
      arr[i] = (arr[i] - mean[j]) / std[j];
    }
  }
  // Warnings only once the data are known to be usable: a failure stays one line.
  if (valRows < FEW_VAL_ROWS && rows >= 5 * FEW_VAL_ROWS) {
    await opts.warn(`--val-split ${opts.valSplit} holds out only ${valRows} row(s): early stopping on so few is mostly noise`);
  }
  if (intNames.length > 0 && !opts.dequantize) {
    await opts.warn(
      `integer-valued column(s) ${intNames.map((c) => `'${c}'`).join(', ')}: a continuous density of discrete data is degenerate; consider --dequantize`,
    );
  }
  return { train, val, trainRows, valRows, standardization: { mean, std }, dequantized };
}
