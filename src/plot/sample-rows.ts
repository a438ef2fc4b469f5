/**
 * Rows to draw as points: a uniform random subset (reservoir sampling) of a CSV file's
 * rows in the model's column order, read in one streaming pass however large the file.
 */
import { checkReadable, openSource, readNumeric } from '../data/csv-reader.js';
import { UserError } from '../errors.js';
import { modelColumnsIn } from '../data/model-columns.js';
import type { Rng } from '../rng.js';

export interface RowSet {
  /** rows × dim, row-major, model column order. */
  values: Float32Array;
  rows: number;
  /** Rows in the file (before subsampling). */
  total: number;
  /** Rows skipped because a model cell was missing or invalid. */
  skipped: number;
}

export async function reservoirRows(path: string, header: boolean, columns: string[], keep: number, rng: Rng): Promise<RowSet> {
  await checkReadable(path);
  const src = openSource(path);
  const D = columns.length;
  const values = new Float32Array(keep * D);
  let seen = 0;
  const stats = { rows: 0, dropped: 0 };
  const reader = readNumeric(
    src,
    { header, dropInvalid: true, invalid: 'skip', columnsResolver: (file) => modelColumnsIn(src.name, file, columns) },
    8192,
    undefined,
    stats,
  );
  for await (const chunk of reader) {
    for (let r = 0; r < chunk.rows; r++) {
      const slot = seen < keep ? seen : rng.int(seen + 1);
      if (slot < keep) values.set(chunk.data.subarray(r * D, r * D + D), slot * D);
      seen += 1;
    }
  }
  if (seen === 0) throw new UserError(`${src.name}: no complete data rows to plot`);
  const rows = Math.min(seen, keep);
  return { values: values.subarray(0, rows * D), rows, total: seen, skipped: stats.dropped };
}
