import { renameSync, rmSync, writeFileSync } from "node:fs";
import { CommandError } from "./errors.ts";

/** Writes `text` to `path` through a temporary file beside it, then renames it: never half a file. `shown` names it in the error. */
export function writeFileAtomic(path: string, text: string, shown: string = path): void {
  const temporary = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(temporary, text);
    renameSync(temporary, path);
  } catch (err) {
    rmSync(temporary, { force: true });
    throw new CommandError(`cannot write ${shown} (${(err as Error).message})`);
  }
}
