/**
 * Numbers the pictures are made of: axis ranges, histograms, the density grid.
 */

export type Range = [number, number];

/** Quantile (linear interpolation) of sorted values. */
function quantileSorted(sorted: Float64Array, p: number): number {
  const pos = p * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
}

/**
 * Axis range for column `col` of one or more row sets: the 0.5%–99.5% quantiles of all
 * their values, padded by `pad` of the width on each side (so a few far outliers do not
 * squash the picture). Falls back to `fallback` when the values are degenerate.
 */
export function robustRange(sets: { values: ArrayLike<number>; rows: number }[], dim: number, col: number, pad: number, fallback: Range): Range {
  const n = sets.reduce((a, s) => a + s.rows, 0);
  const all = new Float64Array(n);
  let at = 0;
  for (const s of sets) for (let r = 0; r < s.rows; r++) all[at++] = s.values[r * dim + col];
  const finite = all.filter((v) => Number.isFinite(v)).sort();
  if (finite.length < 2) return fallback;
  const lo = quantileSorted(finite, 0.005);
  const hi = quantileSorted(finite, 0.995);
  if (!(hi > lo)) return fallback;
  const w = hi - lo;
  return [lo - pad * w, hi + pad * w];
}

export interface HistogramBar {
  lo: number;
  hi: number;
  /** Normalised so the bars of one source integrate to 1 (counts outside the range included in the total). */
  density: number;
}

/** Histogram of column `col` over `range` with `bins` equal bins. */
export function histogram(values: ArrayLike<number>, rows: number, dim: number, col: number, range: Range, bins: number): HistogramBar[] {
  const [lo, hi] = range;
  const width = (hi - lo) / bins;
  const counts = new Float64Array(bins);
  for (let r = 0; r < rows; r++) {
    const v = values[r * dim + col];
    const b = Math.floor((v - lo) / width);
    if (b >= 0 && b < bins) counts[b] += 1;
  }
  return Array.from(counts, (c, b) => ({ lo: lo + b * width, hi: lo + (b + 1) * width, density: rows > 0 ? c / (rows * width) : 0 }));
}

export interface Grid {
  x: Range;
  y: Range;
  nx: number;
  ny: number;
}

/** Cell centres of a grid, row-major (y outer, x inner) as rows of (x, y). */
export function gridPoints(g: Grid): Float32Array {
  const out = new Float32Array(g.nx * g.ny * 2);
  const dx = (g.x[1] - g.x[0]) / g.nx;
  const dy = (g.y[1] - g.y[0]) / g.ny;
  for (let j = 0; j < g.ny; j++) {
    for (let i = 0; i < g.nx; i++) {
      const at = (j * g.nx + i) * 2;
      out[at] = g.x[0] + (i + 0.5) * dx;
      out[at + 1] = g.y[0] + (j + 0.5) * dy;
    }
  }
  return out;
}
