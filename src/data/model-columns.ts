/**
 * Which input columns feed the model: by header name (other columns are carried along
 * untouched), or by position when there is no header.
 */
import { UserError } from '../errors.js';
import { printable } from './csv-reader.js';

export function modelColumnsIn(
  source: string,
  file: { fileColumns: string[]; hasHeader: boolean },
  modelColumns: string[],
  /** Appended to the missing-columns message (e.g. impute's advice). */
  hint = '',
): number[] {
  if (!file.hasHeader) {
    if (file.fileColumns.length !== modelColumns.length) {
      throw new UserError(
        `${source}: ${file.fileColumns.length} column(s) without a header, the model has ${modelColumns.length} (${printable(modelColumns.join(', '), 200)}); add a header to match by name`,
      );
    }
    return modelColumns.map((_, i) => i);
  }
  const absent = modelColumns.filter((c) => !file.fileColumns.includes(c));
  if (absent.length > 0) {
    throw new UserError(
      `${source}: missing column(s) ${printable(absent.map((c) => `'${c}'`).join(', '), 200)} that the model needs (model columns: ${printable(modelColumns.join(', '), 200)}; input: ${printable(file.fileColumns.join(', '), 200)})${hint}`,
    );
  }
  return modelColumns.map((c) => file.fileColumns.indexOf(c));
}
