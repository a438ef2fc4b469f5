/**
 * Everything nf shows a person: messages, warnings, progress. All of it goes to stderr;
 * colour and spinners only on a terminal (NO_COLOR and TERM=dumb turn both off, --no-color
 * the colour; FORCE_COLOR turns colour on). chalk and ora are loaded only when used.
 */
import type { ChalkInstance } from 'chalk';
import type { Ora } from 'ora';
import { escapeControls } from './errors.js';

let quiet = false;
let colorOverride: boolean | undefined;

export function configureTerminal(opts: { quiet?: boolean; color?: boolean }): void {
  quiet = Boolean(opts.quiet);
  if (opts.color === false) colorOverride = false;
}

export function isInteractive(): boolean {
  // A terminal reporting 0 columns (a pty without a window size, e.g. under `script` or
  // `docker run -t`) is not one we can draw on: ora's line count divides by the width.
  return Boolean(process.stderr.isTTY) && (process.stderr.columns ?? 0) > 0 && process.env.TERM !== 'dumb' && !process.env.CI;
}

export function useColor(): boolean {
  if (colorOverride === false) return false;
  const force = process.env.FORCE_COLOR;
  if (force !== undefined && force !== '' && force !== '0' && force !== 'false') return true;
  if (process.env.NO_COLOR) return false;
  return isInteractive();
}

let chalkInstance: ChalkInstance | null = null;
async function paint(): Promise<ChalkInstance | null> {
  if (!useColor()) return null;
  if (!chalkInstance) {
    const { Chalk } = await import('chalk');
    chalkInstance = new Chalk({ level: 1 });
  }
  return chalkInstance;
}

function write(line: string): void {
  process.stderr.write(line + '\n');
}

/** The one line shown for a failure. Always printed, even with -q. */
export async function printError(message: string): Promise<void> {
  const c = await paint().catch(() => null);
  write(`${c ? c.red('nf: error:') : 'nf: error:'} ${escapeControls(message)}`);
}

export async function warn(message: string): Promise<void> {
  if (quiet) return;
  const c = await paint();
  write(`${c ? c.yellow('nf: warning:') : 'nf: warning:'} ${escapeControls(message)}`);
}

export function note(message: string): void {
  if (!quiet) write(`nf: ${escapeControls(message)}`);
}

/** A note shown even with -q: what happened after a signal (the answer to "did it hear me?"). */
export function noteAlways(message: string): void {
  write(`nf: ${escapeControls(message)}`);
}

export interface Progress {
  update(text: string): void;
  /** Permanently prints a line (the spinner keeps going below it). */
  log(text: string): void;
  stop(): void;
}

const PLAIN_PROGRESS_MS = 5000;

/**
 * Spinner with live text on a terminal (plain lines where a spinner is unwelcome); silent
 * when stderr is not a terminal (logs stay clean).
 */
export async function startProgress(initial: string): Promise<Progress> {
  // NO_COLOR also means no spinner (the contract); --no-color keeps an uncoloured one.
  if (quiet || !process.stderr.isTTY) {
    return { update: () => undefined, log: (t) => note(t), stop: () => undefined };
  }
  if (!isInteractive() || process.env.NO_COLOR) {
    // A terminal that gets no spinner (NO_COLOR, TERM=dumb, CI, no width) still gets
    // progress, as plain lines a few seconds apart.
    let last = 0;
    return {
      update: (text) => {
        const now = Date.now();
        if (now - last < PLAIN_PROGRESS_MS) return;
        last = now;
        note(text);
      },
      log: (t) => note(t),
      stop: () => undefined,
    };
  }
  const { default: ora } = await import('ora');
  const spinner: Ora = ora({ text: initial, stream: process.stderr, color: useColor() ? 'cyan' : false, isEnabled: true, discardStdin: false }).start();
  return {
    update: (text) => {
      spinner.text = text;
    },
    log: (text) => {
      spinner.clear();
      write(`nf: ${text}`);
      spinner.render();
    },
    stop: () => spinner.stop(),
  };
}

export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}m${String(s % 60).padStart(2, '0')}s` : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

export async function emphasize(text: string): Promise<string> {
  const c = await paint();
  return c ? c.bold(text) : text;
}
