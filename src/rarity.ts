/**
 * Rarity: where a point's log density falls among the training rows' own log densities.
 * The fit stores a few hundred quantiles of the training log densities; rarity(v) is the
 * (interpolated) fraction of training rows with a lower density than v: 0 means lower
 * than anything seen in training, and fresh data from the training distribution gives
 * values roughly uniform on [0, 1].
 */

export const RARITY_QUANTILES = 201;

/** Evenly spaced quantiles (0, 1/(k−1), …, 1) of `values`, ascending. */
export function quantiles(values: ArrayLike<number>, k = RARITY_QUANTILES): number[] {
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length;
  if (n === 0) return [];
  const out: number[] = [];
  for (let i = 0; i < k; i++) {
    const pos = (i / (k - 1)) * (n - 1);
    const lo = Math.floor(pos);
    const hi = Math.min(n - 1, lo + 1);
    out.push(sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]));
  }
  return out;
}

/** Fraction of the training distribution below v, by linear interpolation between quantiles. */
export function rarity(q: readonly number[], v: number): number {
  const k = q.length;
  if (Number.isNaN(v) || k < 2) return Number.NaN;
  if (v <= q[0]) return 0;
  if (v >= q[k - 1]) return 1;
  // Binary search for the last quantile ≤ v.
  let lo = 0;
  let hi = k - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (q[mid] <= v) lo = mid;
    else hi = mid;
  }
  const span = q[hi] - q[lo];
  const frac = span > 0 ? (v - q[lo]) / span : 0;
  return (lo + frac) / (k - 1);
}
