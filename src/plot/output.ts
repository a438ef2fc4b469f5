/**
 * Where the picture goes: the format from the file name, and an atomic write (a temporary
 * sibling renamed into place) so a failed run never leaves a truncated image.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import { ioMessage, UsageError, UserError } from '../errors.js';
import { trackTemp, writeStdout } from '../data/csv-writer.js';

export type ImageFormat = 'png' | 'svg';

export function imageFormat(output: string, format: ImageFormat | undefined): ImageFormat {
  if (format) return format;
  if (output === '-') throw new UsageError("--output -: say which format to write with --format png|svg");
  const ext = extname(output).toLowerCase();
  if (ext === '.png' || ext === '.svg') return ext.slice(1) as ImageFormat;
  throw new UsageError(`--output ${output}: cannot tell the image format from the name; end it in .png or .svg, or give --format`);
}

/** Fails early (before any work) when the output's directory cannot take a file. */
export async function checkWritable(output: string): Promise<void> {
  if (output === '-') return;
  const existing = await stat(output).catch(() => null);
  if (existing?.isDirectory()) throw new UserError(`${output}: is a directory; give a file name`);
  const dir = dirname(output);
  const d = await stat(dir).catch(() => null);
  if (!d) throw new UserError(`${output}: cannot write: no such directory ${dir}`);
  if (!d.isDirectory()) throw new UserError(`${output}: cannot write: ${dir} is not a directory`);
}

export async function writeImage(output: string, bytes: Buffer | string): Promise<void> {
  if (output === '-') {
    await writeStdout(bytes);
    return;
  }
  const existing = await stat(output).catch(() => null);
  if (existing && !existing.isFile()) {
    // A device or pipe (e.g. /dev/stdout): write straight into it.
    await writeFile(output, bytes).catch((err: unknown) => {
      throw new UserError(`${output}: cannot write: ${ioMessage(err)}`);
    });
    return;
  }
  const tmp = join(dirname(output), `.${basename(output)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  trackTemp(tmp, true);
  try {
    // Synchronous, so a signal handler never runs while the file's creation is in flight.
    writeFileSync(tmp, bytes, { flag: 'wx' });
    await rename(tmp, output);
  } catch (err) {
    await rm(tmp, { force: true });
    throw new UserError(`${output}: cannot write: ${ioMessage(err)}`);
  } finally {
    trackTemp(tmp, false);
  }
}
