/**
 * Errors a user can cause. The CLI prints their message as one line and exits
 * with their code; anything else is an internal bug (stack trace only with NF_DEBUG=1).
 */
export class UserError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = 'UserError';
    this.exitCode = exitCode;
  }
}

/** A bad option or option value: exit code 2. */
export class UsageError extends UserError {
  constructor(message: string) {
    super(message, 2);
    this.name = 'UsageError';
  }
}

/** A short, human description of a file-system error (no temporary paths, no syscall names). */
export function ioMessage(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const known: Record<string, string> = {
    ENOSPC: 'no space left on device',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EROFS: 'read-only file system',
    ENOTDIR: 'a parent is not a directory',
    ENOENT: 'no such file or directory',
    EISDIR: 'is a directory',
    EEXIST: 'a file is in the way',
    EDQUOT: 'disk quota exceeded',
    EMFILE: 'too many open files',
    EFBIG: 'file too large',
    EIO: 'input/output error',
  };
  return (e?.code && known[e.code]) ?? e?.message ?? String(err);
}

/** The shell's exit status for a process ended by SIGINT (130) or SIGTERM (143). */
export const signalExitCode = (sig: NodeJS.Signals): number => (sig === 'SIGINT' ? 130 : 143);

/**
 * Text shown escaped where it could break a one-line message: control characters (from a
 * file's header or cells, a JSON parser's excerpt) would start new lines or drive the terminal.
 */
export function escapeControls(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => {
    const code = c.charCodeAt(0);
    return code > 0xff ? `\\u${code.toString(16)}` : `\\x${code.toString(16).padStart(2, '0')}`;
  });
}
