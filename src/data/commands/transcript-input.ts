import { resolve } from "node:path";
import { CommandError, UsageError } from "../../commandline/errors.ts";
import { TRANSCRIPT_FORMATS, isFormatChoice, readTranscript } from "../parsers/formats.ts";
import { countDialogueLines, formatSkipCounts, type Transcript } from "../transcript.ts";
import { writeFileAtomic } from "../../commandline/files.ts";
import type { CommandIo } from "../../commandline/io.ts";

/** Options every dataset command shares. */
export const TRANSCRIPT_INPUT_OPTIONS = {
  input: { type: "string" },
  out: { type: "string" },
  format: { type: "string", default: "auto" },
} as const;

export const TRANSCRIPT_INPUT_USAGE = `  --input PATH     transcript file or folder (required)
  --out FILE       JSONL file to write (required)
  --format NAME    auto|${TRANSCRIPT_FORMATS.join("|")} (default auto)`;

/** Parses the input and reports what was read and what was skipped. */
export function readTranscriptFor(io: CommandIo, input: string, format: string): Transcript {
  if (!isFormatChoice(format)) throw new UsageError(`--format must be auto or one of ${TRANSCRIPT_FORMATS.join(", ")}, not "${format}"`);
  const transcript = readTranscript(resolve(io.cwd, input), format);
  const episodes = new Set(transcript.scenes.map((s) => s.episode)).size;
  io.out(`read ${countDialogueLines(transcript.scenes)} dialogue lines in ${transcript.scenes.length} scenes of ${episodes} episodes from ${input}`);
  io.out(`skipped: ${formatSkipCounts(transcript.skipped)}`);
  return transcript;
}

/** Writes one JSON value per line, through a temporary file, so a failed write never leaves half a file. */
export function writeJsonl(io: CommandIo, out: string, values: readonly unknown[]): void {
  const text = values.map((v) => JSON.stringify(v)).join("\n") + (values.length ? "\n" : "");
  writeFileAtomic(resolve(io.cwd, out), text, out);
}
