import { readFileSync, readdirSync, statSync } from "node:fs";
import { extname, join } from "node:path";
import { InputError } from "../errors.ts";

/**
 * Reads a transcript file as UTF-8. Binary data is an error naming the line; invalid UTF-8
 * is left as U+FFFD for the parser to skip line by line.
 */
export function readTextFile(file: string): string {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    throw new InputError(file, undefined, `cannot read (${describeFsError(err)})`);
  }
  const nul = bytes.indexOf(0);
  if (nul !== -1) {
    const line = lineAt(bytes.subarray(0, nul).toString("latin1"), nul);
    throw new InputError(file, line, "binary data (a NUL byte); is this a transcript?");
  }
  return bytes.toString("utf8").replace(/^\uFEFF/, "");
}

/** The files in a folder with one of the given extensions, sorted so episodes come in order. */
export function listFiles(folder: string, extensions: readonly string[]): string[] {
  let names: string[];
  try {
    names = readdirSync(folder);
  } catch (err) {
    throw new InputError(folder, undefined, `cannot list the folder (${describeFsError(err)})`);
  }
  return names
    .filter((name) => extensions.includes(extname(name).toLowerCase()))
    .sort((a, b) => a.localeCompare(b, "en", { numeric: true }))
    .map((name) => join(folder, name))
    .filter((path) => statSync(path).isFile());
}

/** 1-based line number of a character offset. */
export function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

export function describeFsError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return "no such file or folder";
  if (code === "EACCES") return "permission denied";
  if (code === "EISDIR") return "it is a folder";
  return (err as Error).message;
}
