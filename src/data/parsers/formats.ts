import { closeSync, openSync, readSync, statSync } from "node:fs";
import { extname } from "node:path";
import { InputError } from "../errors.ts";
import { UsageError } from "../../commandline/errors.ts";
import { countDialogueLines, type Transcript } from "../transcript.ts";
import { headerDelimiter, parseCsv } from "./csv.ts";
import { parseEmorynlp } from "./emorynlp.ts";
import { describeFsError, listFiles } from "./read-input.ts";
import { parseEpisodeFolder, parseKaggleFile } from "./script.ts";

export const TRANSCRIPT_FORMATS = ["kaggle", "episodes", "emorynlp", "csv"] as const;
export type TranscriptFormat = (typeof TRANSCRIPT_FORMATS)[number];
export type FormatChoice = TranscriptFormat | "auto";

export function isFormatChoice(value: string): value is FormatChoice {
  return value === "auto" || (TRANSCRIPT_FORMATS as readonly string[]).includes(value);
}

/**
 * Guesses the format of a file or folder: a folder by the files it holds (.json, .csv, else .txt
 * episodes), a file by its extension, then by its first bytes (JSON, a CSV header, else Kaggle text).
 */
export function detectFormat(path: string): TranscriptFormat {
  if (isFolder(path)) {
    if (listFiles(path, [".json"]).length) return "emorynlp";
    if (listFiles(path, [".csv", ".tsv"]).length) return "csv";
    if (listFiles(path, [".txt"]).length) return "episodes";
    throw new InputError(path, undefined, "no .txt, .json or .csv transcript files in this folder");
  }
  const extension = extname(path).toLowerCase();
  if (extension === ".json") return "emorynlp";
  if (extension === ".csv" || extension === ".tsv") return "csv";
  const head = readHead(path);
  if (/^\s*(?:\{|\[\s*\{)/.test(head)) return "emorynlp";
  if (headerDelimiter(head.split(/\r?\n/, 1)[0] ?? "")) return "csv";
  return "kaggle";
}

/** Reads and parses a transcript; an input with no dialogue at all is an error, not an empty dataset. */
export function readTranscript(path: string, choice: FormatChoice): Transcript {
  const format = choice === "auto" ? detectFormat(path) : choice;
  const folder = isFolder(path);
  if (format === "kaggle" && folder) throw new UsageError(`${path} is a folder; --format kaggle reads one file (use --format episodes for a folder of .txt files)`);
  if (format === "episodes" && !folder) throw new UsageError(`${path} is a file; --format episodes reads a folder of .txt files (use --format kaggle for one file)`);

  const transcript = parseWith(format, path);
  if (countDialogueLines(transcript.scenes) === 0) {
    throw new InputError(path, undefined, `no dialogue lines found when read as ${format}; check --format`);
  }
  return transcript;
}

function parseWith(format: TranscriptFormat, path: string): Transcript {
  switch (format) {
    case "kaggle":
      return parseKaggleFile(path);
    case "episodes":
      return parseEpisodeFolder(path);
    case "emorynlp":
      return parseEmorynlp(path);
    case "csv":
      return parseCsv(path);
  }
}

function isFolder(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch (err) {
    throw new InputError(path, undefined, `cannot read (${describeFsError(err)})`);
  }
}

function readHead(file: string): string {
  const buffer = Buffer.alloc(4096);
  let fd: number | undefined;
  try {
    fd = openSync(file, "r");
    return buffer.subarray(0, readSync(fd, buffer)).toString("utf8");
  } catch (err) {
    throw new InputError(file, undefined, `cannot read (${describeFsError(err)})`);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
