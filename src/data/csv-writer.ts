/**
 * Buffered CSV output with backpressure. Output to a file goes to a temporary file that
 * is renamed into place at the end, so a failed run never leaves a truncated file.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, fstatSync, openSync, unlinkSync, type Stats } from 'node:fs';
import { lstat, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Writable } from 'node:stream';
import { ioMessage, signalExitCode, UserError } from '../errors.js';

const FLUSH_CHARS = 1 << 16;

/**
 * Temporary files not yet renamed into place. Ctrl-C or a SIGTERM would otherwise end the
 * process with a hidden partial file left next to the target.
 */
const openTemps = new Set<string>();

function removeTempsAndExit(signal: NodeJS.Signals): void {
  for (const tmp of openTemps) {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
  }
  process.exit(signalExitCode(signal));
}

/**
 * Registers (`open`) or releases a temporary file that a SIGINT/SIGTERM must remove before
 * nf exits. Register before the file is created, so no signal can find it unknown.
 */
export function trackTemp(tmp: string, open: boolean): void {
  if (open) {
    if (openTemps.size === 0) {
      process.on('SIGINT', removeTempsAndExit);
      process.on('SIGTERM', removeTempsAndExit);
    }
    openTemps.add(tmp);
  } else if (openTemps.delete(tmp) && openTemps.size === 0) {
    process.off('SIGINT', removeTempsAndExit);
    process.off('SIGTERM', removeTempsAndExit);
  }
}

/** process.stdout or process.stderr if `s` is the file that one of them already writes to. */
function standardStream(s: Stats): { stream: Writable; name: string } | null {
  for (const [fd, stream, name] of [[1, process.stdout, 'stdout'], [2, process.stderr, 'stderr']] as const) {
    try {
      const open = fstatSync(fd);
      if (open.dev === s.dev && open.ino === s.ino) return { stream, name };
    } catch {
      // fd not open
    }
  }
  return null;
}

/**
 * Writes a whole text (a JSON summary, a description, an image) to stdout and waits until
 * it is out, so a failed write (a full disk, a closed stdout) is an error, not a silent loss.
 * EPIPE passes through: the CLI treats a closed pipe as a quiet success.
 */
export async function writeStdout(data: string | Uint8Array): Promise<void> {
  await new Promise<void>((resolve, reject) =>
    process.stdout.write(data, (err?: Error | null) => {
      if (!err) return resolve();
      const e = err as NodeJS.ErrnoException;
      reject(e.code === 'EPIPE' ? e : new UserError(`stdout: cannot write: ${ioMessage(e)}`));
    }),
  );
}

export class CsvWriter {
  private pending: string[] = [];
  private size = 0;
  private failure: Error | null = null;

  private constructor(
    private readonly stream: Writable,
    private readonly target: { tmp: string; path: string } | null,
    private readonly name = 'stdout',
  ) {
    stream.on('error', (err) => {
      this.failure = err;
    });
  }

  static toStdout(): CsvWriter {
    return new CsvWriter(process.stdout, null);
  }

  /**
   * A writer to `path`. A new file or an existing regular file is written as a temporary
   * sibling and renamed into place by `close`. Anything else — a symbolic link, device,
   * FIFO (e.g. /dev/stdout, /dev/null, a named pipe) — is written in place, never replaced.
   * Fails before anything is written if the place cannot take a file.
   */
  static async toFile(path: string): Promise<CsvWriter> {
    const existing = await lstat(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return null;
      throw new UserError(`${path}: cannot write: ${ioMessage(err)}`);
    });
    if (existing) {
      const s = existing.isSymbolicLink() ? await stat(path).catch(() => null) : existing;
      if (s?.isDirectory()) throw new UserError(`${path}: is a directory; give a file name`);
      // `-o /dev/stdout` (or /proc/self/fd/1, /dev/stderr): opening it anew would truncate
      // a stream redirected with >>, so write to the stream nf already has.
      const std = s ? standardStream(s) : null;
      if (std) return new CsvWriter(std.stream, null, std.name);
      if (!existing.isFile()) return CsvWriter.opened(path, null);
    }
    const dir = dirname(path);
    const d = await stat(dir).catch((err: NodeJS.ErrnoException) => {
      throw new UserError(`${path}: cannot write: ${err.code === 'ENOENT' ? `no such directory ${dir}` : err.code === 'ENOTDIR' ? 'a parent is not a directory' : ioMessage(err)}`);
    });
    if (!d.isDirectory()) throw new UserError(`${path}: cannot write: ${dir} is not a directory`);
    const tmp = join(dir, `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    return CsvWriter.opened(tmp, { tmp, path });
  }

  private static async opened(file: string, target: { tmp: string; path: string } | null): Promise<CsvWriter> {
    if (target) {
      // The signal handlers go in before the file exists, and the open is synchronous:
      // a Ctrl-C can then never find a temporary file that nf does not yet know about.
      trackTemp(target.tmp, true);
      let fd: number;
      try {
        fd = openSync(target.tmp, 'wx');
      } catch (err) {
        trackTemp(target.tmp, false);
        throw new UserError(`${target.path}: cannot write: ${ioMessage(err)}`);
      }
      return new CsvWriter(createWriteStream(target.tmp, { fd }), target, file);
    }
    // An existing non-regular file (a FIFO, /dev/null): its open may block, so not on the main thread.
    const stream = createWriteStream(file, { flags: 'w' });
    await new Promise<void>((resolve, reject) => {
      stream.once('open', () => resolve());
      stream.once('error', (err: NodeJS.ErrnoException) => reject(new UserError(`${file}: cannot write: ${ioMessage(err)}`)));
    });
    return new CsvWriter(stream, target, file);
  }

  /** Queues one line (without its line break). */
  async line(text: string): Promise<void> {
    this.pending.push(text);
    this.size += text.length + 1;
    if (this.size >= FLUSH_CHARS) await this.flush();
  }

  async flush(): Promise<void> {
    this.check();
    if (this.pending.length === 0) return;
    const text = this.pending.join('\n') + '\n';
    this.pending = [];
    this.size = 0;
    if (!this.stream.write(text)) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.stream.off('drain', done);
          this.stream.off('error', done);
          resolve();
        };
        this.stream.on('drain', done);
        this.stream.on('error', done);
      });
    }
    this.check();
  }

  async close(): Promise<void> {
    await this.flush();
    if (this.isStandard()) {
      // Wait until the data are out, so a failed write (e.g. a full disk) is reported.
      await new Promise<void>((resolve) =>
        this.stream.write('', (err?: Error | null) => {
          if (err) this.failure ??= err;
          resolve();
        }),
      );
      this.check();
      return;
    }
    await new Promise<void>((resolve) => {
      // end's callback gets the error of a failed last write (a full disk), and may run
      // before the 'error' event: record it here or the cut-off file would be renamed into place.
      this.stream.end((err?: Error | null) => {
        if (err) this.failure ??= err;
        resolve();
      });
    });
    this.check();
    if (!this.target) return;
    const { tmp, path } = this.target;
    try {
      await rename(tmp, path);
    } catch (err) {
      await rm(tmp, { force: true });
      throw new UserError(`${path}: cannot write: ${ioMessage(err)}`);
    } finally {
      trackTemp(tmp, false);
    }
  }

  /** Removes the temporary file after a failure. */
  async abort(): Promise<void> {
    if (this.isStandard()) return;
    this.stream.destroy();
    if (!this.target) return;
    await rm(this.target.tmp, { force: true });
    trackTemp(this.target.tmp, false);
  }

  /** stdout or stderr: never ended or removed by nf. */
  private isStandard(): boolean {
    return this.stream === process.stdout || this.stream === process.stderr;
  }

  private check(): void {
    if (!this.failure) return;
    const e = this.failure as NodeJS.ErrnoException;
    if (e.code === 'EPIPE') throw e; // the CLI treats a closed pipe as a quiet success
    throw new UserError(`${this.target?.path ?? this.name}: cannot write: ${ioMessage(e)}`);
  }
}
