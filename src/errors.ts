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
