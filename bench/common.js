// Shared by the benchmark scripts: repository paths and `--name value` options.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const nf = join(root, 'bin', 'nf.js');
/** ../shared/data next to the repository, or $NF_DATA. */
export const defaultDataDir = process.env.NF_DATA ?? join(root, '..', 'shared', 'data');

const args = process.argv.slice(2);
/** Value of `--name value`, or `fallback`. */
export const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
/** Whether `--name` was given. */
export const flag = (name) => args.includes(`--${name}`);
