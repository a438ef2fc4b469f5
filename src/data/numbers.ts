/**
 * Parsing and formatting numbers for CSV cells. Always '.' decimals, never locale.
 */

const FLOAT32_MAX = 3.4028234663852886e38;
// The digits before and after '.' cannot trade places: no backtracking on long digit runs.
const DECIMAL = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
/** Cells that mean "no value" in common tools' output. */
const MISSING = new Set(['', 'na', 'n/a', 'nan', '-nan', 'null', 'none', 'inf', '+inf', '-inf', 'infinity', '+infinity', '-infinity', '?']);

export type CellValue = { ok: true; value: number } | { ok: false; kind: 'missing' | 'overflow' | 'text' };

export function parseCell(raw: string): CellValue {
  const s = raw.trim();
  if (DECIMAL.test(s)) {
    const v = Number(s);
    if (Math.abs(v) > FLOAT32_MAX) return { ok: false, kind: 'overflow' };
    return { ok: true, value: v };
  }
  return { ok: false, kind: MISSING.has(s.toLowerCase()) ? 'missing' : 'text' };
}

/**
 * Shortest decimal that reads back as the same float32 (at most 9 significant digits).
 */
export function formatFloat32(v: number): string {
  if (!Number.isFinite(v)) return Number.isNaN(v) ? 'nan' : v > 0 ? 'inf' : '-inf';
  if (v === 0) return '0';
  const f = Math.fround(v);
  for (let p = 6; p < 9; p++) {
    const s = f.toPrecision(p);
    if (Math.fround(Number(s)) === f) return trimZeros(s);
  }
  return trimZeros(f.toPrecision(9));
}

function trimZeros(s: string): string {
  const e = s.indexOf('e');
  const mant = e < 0 ? s : s.slice(0, e);
  const exp = e < 0 ? '' : s.slice(e);
  if (!mant.includes('.')) return s;
  let end = mant.length;
  while (mant[end - 1] === '0') end--;
  if (mant[end - 1] === '.') end--;
  return mant.slice(0, end) + exp;
}

/** Quotes a CSV cell when it holds a delimiter, quote or line break. */
export function csvCell(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}
