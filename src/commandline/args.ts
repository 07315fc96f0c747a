import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "./errors.ts";

type OptionsConfig = NonNullable<ParseArgsConfig["options"]>;

/**
 * node:util parseArgs, strict, with its errors turned into one-line UsageErrors.
 * `--help`/`-h` is added to every command.
 */
export function parseCommandArgs<T extends OptionsConfig>(argv: string[], options: T, maxPositionals = 0) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { ...options, help: { type: "boolean", short: "h" } } as T & { help: { type: "boolean"; short: "h" } },
      allowPositionals: maxPositionals > 0,
      strict: true,
    });
  } catch (err) {
    throw new UsageError(describeParseError(err as Error & { code?: string }));
  }
  if (parsed.positionals.length > maxPositionals) {
    throw new UsageError(`unexpected argument "${parsed.positionals[maxPositionals]}"`);
  }
  return parsed;
}

function describeParseError(err: Error & { code?: string }): string {
  const option = /'([^']+)'/.exec(err.message)?.[1]?.replace(/ <value>$/, "");
  switch (err.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown option ${option ?? err.message}`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      if (!option) return err.message.split("\n")[0] ?? err.message;
      // parseArgs will not take "-1" as a value unless it is attached: --seed=-1.
      return err.message.includes("ambiguous") ? `option ${option} needs a value; write ${option}=-… for one starting with "-"` : `option ${option} needs a value`;
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return `unexpected argument ${option ? `"${option}"` : ""}`.trim();
    default:
      return err.message;
  }
}

export function requiredOption(value: string | undefined, name: string): string {
  if (value === undefined || value === "") throw new UsageError(`--${name} is required`);
  return value;
}

/** A whole number within bounds, or a UsageError that says which option and what is allowed. */
export function integerOption(value: string | undefined, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const n = /^-?\d+$/.test(value.trim()) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name} must be a whole number from ${min} to ${max}, not "${value}"`);
  }
  return n;
}
