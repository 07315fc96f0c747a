import { CommandError } from "../commandline/errors.ts";

/** Input that cannot be read at all; names the file and, where known, the line. */
export class InputError extends CommandError {
  constructor(
    readonly file: string,
    readonly line: number | undefined,
    problem: string,
  ) {
    super(`${line === undefined ? file : `${file}:${line}`}: ${problem}`);
  }
}

/** A fine-tuning job that could not be started or did not succeed. */
export class FinetuneError extends CommandError {}
