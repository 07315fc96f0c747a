/**
 * Errors the `friend` commands print as one line and turn into an exit code.
 * Each message says what is wrong and, where it helps, what to do about it.
 */
export class CommandError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = 1,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** Bad options or arguments: exit code 2, like most Unix tools. */
export class UsageError extends CommandError {
  constructor(message: string) {
    super(message, 2);
  }
}
