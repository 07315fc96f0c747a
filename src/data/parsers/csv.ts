import { statSync } from "node:fs";
import { basename } from "node:path";
import { InputError } from "../errors.ts";
import { normaliseSpeakerLabel } from "../speakers.ts";
import { SceneCollector, countSkip, mergeSkipCounts, type SkipCounts, type Transcript } from "../transcript.ts";
import { listFiles, readTextFile } from "./read-input.ts";
import { classifyScriptLine, stripDirections } from "./script-lines.ts";

/** Header names accepted for each column, lower-cased. */
const COLUMN_NAMES = {
  speaker: ["speaker", "character", "name", "person", "author"],
  text: ["text", "line", "dialogue", "utterance", "transcript", "quote"],
  episode: ["episode", "episode_id", "episode_title", "title"],
  scene: ["scene", "scene_id"],
} as const;
const DELIMITERS = [",", "\t", ";"] as const;

interface CsvColumns {
  speaker: number;
  text: number;
  episode: number | undefined;
  scene: number | undefined;
}

/**
 * A CSV (or TSV) with a header row naming a speaker and a text column; optional episode and
 * scene columns cut scenes when their value changes. A row with no speaker is read like a script
 * line, so `[Scene: …]` rows cut scenes too.
 */
export function parseCsv(path: string): Transcript {
  const files = statSync(path).isDirectory() ? listFiles(path, [".csv", ".tsv"]) : [path];
  if (files.length === 0) throw new InputError(path, undefined, "no .csv files in this folder");
  const transcript: Transcript = { scenes: [], skipped: {} };
  for (const file of files) {
    const parsed = parseCsvText(readTextFile(file), file);
    transcript.scenes.push(...parsed.scenes);
    mergeSkipCounts(transcript.skipped, parsed.skipped);
  }
  return transcript;
}

export function parseCsvText(text: string, file: string): Transcript {
  const delimiter = headerDelimiter(text.slice(0, text.search(/\r?\n|$/))) ?? ",";
  const records = splitCsvRecords(text, delimiter, file);
  const [header, ...rows] = records;
  const columns = findColumns(header ?? []);
  if (!columns) {
    throw new InputError(
      file,
      1,
      `the header row needs a speaker column (${COLUMN_NAMES.speaker.join("/")}) and a text column (${COLUMN_NAMES.text.join("/")})`,
    );
  }

  const collector = new SceneCollector(basename(file));
  const skipped: SkipCounts = {};
  let lastEpisode: string | undefined;
  let lastScene: string | undefined;
  for (const row of rows) {
    if (row.length === 1 && row[0] === "") continue;
    const speakerField = row[columns.speaker];
    const textField = row[columns.text];
    if (speakerField === undefined || textField === undefined) {
      countSkip(skipped, "malformed entry");
      continue;
    }
    const episode = columns.episode === undefined ? undefined : row[columns.episode];
    if (episode && episode !== lastEpisode) {
      collector.startEpisode(episode);
      lastEpisode = episode;
    }
    const scene = columns.scene === undefined ? undefined : row[columns.scene];
    if (scene !== undefined && scene !== lastScene) {
      collector.breakScene();
      lastScene = scene;
    }
    addRow(collector, skipped, speakerField, textField);
  }
  return { scenes: collector.scenes, skipped };
}

function addRow(collector: SceneCollector, skipped: SkipCounts, speakerField: string, textField: string): void {
  if (textField.includes("\uFFFD") || speakerField.includes("\uFFFD")) {
    countSkip(skipped, "invalid UTF-8");
    return;
  }
  if (!speakerField.trim()) {
    // No speaker: a heading, direction or title row in a script-like CSV.
    const [item] = classifyScriptLine(textField);
    if (item?.kind === "scene heading" || item?.kind === "end marker" || item?.kind === "episode title") {
      countSkip(skipped, item.kind);
      collector.breakScene();
    } else {
      countSkip(skipped, item?.kind === "skip" ? item.reason : "no speaker label");
    }
    return;
  }
  const speakers = normaliseSpeakerLabel(speakerField);
  const text = stripDirections(textField);
  if (!speakers) countSkip(skipped, "no speaker label");
  else if (!text) countSkip(skipped, "only stage directions");
  else collector.add({ speakers, text });
}

/** The delimiter that makes this line a header with speaker and text columns, if any. */
export function headerDelimiter(line: string): string | undefined {
  return DELIMITERS.find((d) => findColumns(line.split(d).map((name) => name.replace(/^"|"$/g, ""))));
}

function findColumns(header: readonly string[]): CsvColumns | undefined {
  const names = header.map((h) => h.trim().toLowerCase());
  const find = (accepted: readonly string[]) => {
    const index = names.findIndex((n) => accepted.includes(n));
    return index === -1 ? undefined : index;
  };
  const speaker = find(COLUMN_NAMES.speaker);
  const text = find(COLUMN_NAMES.text);
  if (speaker === undefined || text === undefined) return undefined;
  return { speaker, text, episode: find(COLUMN_NAMES.episode), scene: find(COLUMN_NAMES.scene) };
}

/** RFC 4180 records: quoted fields may hold delimiters, `""` and newlines. */
export function splitCsvRecords(text: string, delimiter: string, file: string): string[][] {
  const records: string[][] = [];
  let fields: string[] = [];
  let field = "";
  let line = 1;
  let quoteLine = 0;
  let inQuotes = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (inQuotes) {
      if (ch === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') {
        inQuotes = false;
      } else {
        if (ch === "\n") line++;
        field += ch;
      }
    } else if (ch === '"' && field === "") {
      inQuotes = true;
      quoteLine = line;
    } else if (ch === delimiter) {
      fields.push(field);
      field = "";
    } else if (ch === "\n" || ch === "\r") {
      if (ch === "\r" && text[i + 1] === "\n") i++;
      fields.push(field);
      records.push(fields);
      fields = [];
      field = "";
      line++;
    } else {
      field += ch;
    }
  }
  if (inQuotes) throw new InputError(file, quoteLine, "a quoted field is never closed (a missing \")");
  if (field !== "" || fields.length > 0) {
    fields.push(field);
    records.push(fields);
  }
  return records;
}
