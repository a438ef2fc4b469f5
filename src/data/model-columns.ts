/**
 * Which input columns feed the model: by header name (other columns are carried along
 * untouched), or by position when there is no header.
 */
import { UserError } from '../errors.js';

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
        `${source}: ${file.fileColumns.length} column(s) without a header, the model has ${modelColumns.length} (${modelColumns.join(', ')}); add a header to match by name`,
      );
    }
    return modelColumns.map((_, i) => i);
  }
  const absent = modelColumns.filter((c) => !file.fileColumns.includes(c));
  if (absent.length > 0) {
    throw new UserError(
      `${source}: missing column(s) ${absent.map((c) => `'${c}'`).join(', ')} that the model needs (model columns: ${modelColumns.join(', ')}; input: ${file.fileColumns.join(', ')})${hint}`,
    );
  }
  return modelColumns.map((c) => file.fileColumns.indexOf(c));
}
