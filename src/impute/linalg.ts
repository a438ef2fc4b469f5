/**
 * The few dense-matrix helpers the sampler needs, on small row-major d×d blocks inside
 * larger Float64Arrays (one block per row being imputed).
 */

/**
 * Cholesky factor L (lower triangular, L Lᵀ = A) of the d×d block of `a` at `aOff`,
 * written to `out` at `outOff`. Returns false (leaving `out` partly written) when A is
 * not numerically positive definite.
 */
export function cholesky(a: Float64Array, aOff: number, d: number, out: Float64Array, outOff: number): boolean {
  for (let i = 0; i < d; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[aOff + i * d + j];
      for (let k = 0; k < j; k++) s -= out[outOff + i * d + k] * out[outOff + j * d + k];
      if (i === j) {
        if (!(s > 0) || !Number.isFinite(s)) return false;
        out[outOff + i * d + i] = Math.sqrt(s);
      } else {
        out[outOff + i * d + j] = s / out[outOff + j * d + j];
      }
    }
    for (let j = i + 1; j < d; j++) out[outOff + i * d + j] = 0;
  }
  return true;
}

/** out[0..d) = L · v for the lower-triangular d×d block of `l` at `lOff`. */
export function lowerTimes(l: Float64Array, lOff: number, d: number, v: Float64Array, out: Float64Array): void {
  for (let i = 0; i < d; i++) {
    let s = 0;
    for (let k = 0; k <= i; k++) s += l[lOff + i * d + k] * v[k];
    out[i] = s;
  }
}

/** log Σ exp(values[i]) for i < n, stable; −∞ when every value is −∞. */
export function logSumExp(values: Float64Array, n: number): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) if (values[i] > max) max = values[i];
  if (max === Number.NEGATIVE_INFINITY) return max;
  let s = 0;
  for (let i = 0; i < n; i++) s += Math.exp(values[i] - max);
  return max + Math.log(s);
}
