/**
 * Option-value parsers for commander. A bad value is a usage error (exit 2) that names
 * the option and says what is expected.
 */
import { InvalidArgumentError } from 'commander';

export function integer(min: number, max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value) => {
    const v = value.trim();
    if (!/^[+-]?\d+$/.test(v)) throw new InvalidArgumentError(`expected an integer, got '${value}'`);
    const n = Number(v);
    if (n < min || n > max) {
      throw new InvalidArgumentError(`must be ${max === Number.MAX_SAFE_INTEGER && n < min ? `at least ${min}` : `between ${min} and ${max}`}, got ${v}`);
    }
    return n;
  };
}

/** A finite number in (lo, hi] or [lo, hi] depending on `openLow`. */
export function real(lo: number, hi: number, openLow = true): (value: string) => number {
  return (value) => {
    const v = value.trim();
    if (!/^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/.test(v)) throw new InvalidArgumentError(`expected a number, got '${value}'`);
    const n = Number(v);
    // '1e400' matches the pattern but is Infinity.
    if (!Number.isFinite(n)) throw new InvalidArgumentError(`expected a finite number, got '${value}'`);
    const lowOk = openLow ? n > lo : n >= lo;
    if (!lowOk || n > hi) {
      throw new InvalidArgumentError(`must be ${openLow ? 'greater than' : 'at least'} ${lo}${Number.isFinite(hi) ? ` and at most ${hi}` : ''}, got ${n}`);
    }
    return n;
  };
}

export function seed(value: string): number {
  return integer(0, 0xffffffff)(value);
}

export function columnList(value: string): string[] {
  const cols = value.split(',').map((c) => c.trim());
  if (cols.some((c) => c === '')) throw new InvalidArgumentError(`expected comma-separated column names or 1-based indices, got '${value}'`);
  const dup = cols.find((c, i) => cols.indexOf(c) !== i);
  if (dup) throw new InvalidArgumentError(`column '${dup}' is listed twice`);
  return cols;
}

export function choice<T extends string>(values: readonly T[]): (value: string) => T {
  return (value) => {
    const v = value.trim().toLowerCase();
    if (!(values as readonly string[]).includes(v)) throw new InvalidArgumentError(`expected one of ${values.join(', ')}, got '${value}'`);
    return v as T;
  };
}
