/**
 * Buffered CSV output with backpressure. Output to a file goes to a temporary file that
 * is renamed into place at the end, so a failed run never leaves a truncated file.
 */
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Writable } from 'node:stream';
import { UserError } from '../errors.js';

const FLUSH_CHARS = 1 << 16;

export class CsvWriter {
  private pending: string[] = [];
  private size = 0;
  private failure: Error | null = null;

  private constructor(
    private readonly stream: Writable,
    private readonly target: { tmp: string; path: string } | null,
  ) {
    stream.on('error', (err) => {
      this.failure = err;
    });
  }

  static toStdout(): CsvWriter {
    return new CsvWriter(process.stdout, null);
  }

  static toFile(path: string): CsvWriter {
    const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}`);
    return new CsvWriter(createWriteStream(tmp), { tmp, path });
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
    if (!this.target) return;
    await new Promise<void>((resolve, reject) => this.stream.end((err?: Error | null) => (err ? reject(err) : resolve())));
    this.check();
    await rename(this.target.tmp, this.target.path).catch((err: Error) => {
      throw new UserError(`${this.target?.path}: cannot write: ${err.message}`);
    });
  }

  /** Removes the temporary file after a failure. */
  async abort(): Promise<void> {
    if (!this.target) return;
    this.stream.destroy();
    await rm(this.target.tmp, { force: true });
  }

  private check(): void {
    if (!this.failure) return;
    const e = this.failure as NodeJS.ErrnoException;
    if (e.code === 'EPIPE') throw e; // the CLI treats a closed pipe as a quiet success
    throw new UserError(`${this.target?.path ?? 'stdout'}: cannot write: ${e.message}`);
  }
}
