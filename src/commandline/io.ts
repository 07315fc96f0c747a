import { resolve } from "node:path";
import { readEnvFile } from "./env-file.ts";

/** What a command may touch of the outside world, so tests can run commands in-process. */
export interface CommandIo {
  /** One line to stdout (the newline is added). */
  out(line: string): void;
  /** One line to stderr (the newline is added). */
  err(line: string): void;
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
  /** Aborted by Ctrl-C. Reading it is what opts a command in: the others keep Node's default. */
  readonly interrupt: AbortSignal;
}

/** The real process: the first Ctrl-C aborts `interrupt`, a second one kills as usual. */
export function processIo(): CommandIo {
  let controller: AbortController | undefined;
  return {
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
    env: process.env,
    cwd: process.cwd(),
    get interrupt() {
      if (!controller) {
        const created = new AbortController();
        process.once("SIGINT", () => created.abort());
        controller = created;
      }
      return controller.signal;
    },
  };
}

/** The environment with `.env` underneath it: a variable already set wins, as with dotenv. */
export function envWithDotenv(io: CommandIo, envFile: string): Record<string, string | undefined> {
  return { ...readEnvFile(resolve(io.cwd, envFile)), ...io.env };
}
