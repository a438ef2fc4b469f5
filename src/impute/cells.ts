/**
 * Reading one row's model cells for imputation: a number, or a gap to fill. Infinite and
 * float32-overflowing values are observations the model cannot condition on, so they are
 * refused rather than silently replaced.
 */
import { UserError } from '../errors.js';
import { printable } from '../data/csv-reader.js';
import { parseCell } from '../data/numbers.js';

const INFINITE = /^[+-]?inf(inity)?$/i;

/**
 * Parses the picked cells of `record` into `values`/`missing` at `offset`.
 * Returns how many cells are missing.
 */
export function readRowCells(
  record: string[],
  picked: number[],
  values: Float32Array,
  missing: Uint8Array,
  offset: number,
  where: () => string,
  columnName: (fileIndex: number) => string,
): number {
  let gaps = 0;
  for (let j = 0; j < picked.length; j++) {
    const text = record[picked[j]];
    const cell = parseCell(text);
    if (cell.ok) {
      values[offset + j] = cell.value;
      missing[offset + j] = 0;
      continue;
    }
    const t = text.trim();
    if (cell.kind === 'overflow' || INFINITE.test(t)) {
      throw new UserError(
        `${where()}: ${columnName(picked[j])}: '${printable(t)}' is ${cell.kind === 'overflow' ? 'too large for float32' : 'infinite'}; impute fills empty cells, NA and NaN, and cannot condition on this value`,
      );
    }
    // parseCell refuses other text before this point (the reader names the cell).
    values[offset + j] = 0;
    missing[offset + j] = 1;
    gaps += 1;
  }
  return gaps;
}
