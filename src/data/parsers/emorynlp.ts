import { statSync } from "node:fs";
import { InputError } from "../errors.ts";
import { normaliseSpeakerLabel } from "../speakers.ts";
import { countSkip, mergeSkipCounts, type Scene, type SkipCounts, type Transcript } from "../transcript.ts";
import { lineAt, listFiles, readTextFile } from "./read-input.ts";
import { stripDirections } from "./script-lines.ts";

/**
 * The emorynlp character-mining JSON: seasons → episodes → scenes → utterances.
 * Accepts one season object, a list of seasons, or a folder of season files.
 * Utterances with an empty `transcript` are stage directions (their text is in `transcript_with_note`).
 */
export function parseEmorynlp(path: string): Transcript {
  const files = statSync(path).isDirectory() ? listFiles(path, [".json"]) : [path];
  if (files.length === 0) throw new InputError(path, undefined, "no .json season files in this folder");
  const transcript: Transcript = { scenes: [], skipped: {} };
  for (const file of files) {
    const parsed = parseEmorynlpJson(readTextFile(file), file);
    transcript.scenes.push(...parsed.scenes);
    mergeSkipCounts(transcript.skipped, parsed.skipped);
  }
  return transcript;
}

export function parseEmorynlpJson(text: string, file: string): Transcript {
  const seasons = seasonsIn(parseJson(text, file), file);
  const scenes: Scene[] = [];
  const skipped: SkipCounts = {};
  for (const season of seasons) {
    if (!isRecord(season)) {
      countSkip(skipped, "malformed entry");
      continue;
    }
    for (const [e, episode] of listAt(season, "episodes").entries()) {
      const episodeName = stringAt(episode, "episode_id") ?? `${stringAt(season, "season_id") ?? "season"} episode ${e + 1}`;
      const episodeScenes = listAt(episode, "scenes");
      if (!isRecord(episode) || episodeScenes.length === 0) {
        countSkip(skipped, "malformed entry");
        continue;
      }
      for (const scene of episodeScenes) {
        const lines = sceneLines(scene, skipped);
        if (lines.length) scenes.push({ episode: episodeName, lines });
      }
    }
  }
  return { scenes, skipped };
}

function sceneLines(scene: unknown, skipped: SkipCounts): Scene["lines"] {
  const lines: Scene["lines"] = [];
  if (!isRecord(scene) || !Array.isArray(scene.utterances)) {
    countSkip(skipped, "malformed entry");
    return lines;
  }
  for (const utterance of scene.utterances) {
    if (!isRecord(utterance) || typeof utterance.transcript !== "string" || !Array.isArray(utterance.speakers)) {
      countSkip(skipped, "malformed entry");
      continue;
    }
    const raw = utterance.transcript.trim();
    if (!raw) {
      countSkip(skipped, "stage direction");
      continue;
    }
    const speakers = utterance.speakers
      .filter((s): s is string => typeof s === "string")
      .flatMap((s) => normaliseSpeakerLabel(s) ?? []);
    const text = stripDirections(raw);
    if (speakers.length === 0) countSkip(skipped, "no speaker label");
    else if (!text) countSkip(skipped, "only stage directions");
    else lines.push({ speakers: [...new Set(speakers)], text });
  }
  return lines;
}

function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    const message = (err as Error).message;
    const position = /position (\d+)/.exec(message)?.[1];
    const line = position === undefined ? undefined : lineAt(text, Number(position));
    throw new InputError(file, line, `not valid JSON (${message.replace(/ in JSON at position \d+.*$/, "")})`);
  }
}

function seasonsIn(json: unknown, file: string): unknown[] {
  if (Array.isArray(json)) return json;
  if (isRecord(json) && Array.isArray(json.seasons)) return json.seasons;
  if (isRecord(json) && Array.isArray(json.episodes)) return [json];
  throw new InputError(file, 1, "not emorynlp JSON: expected a season object with an `episodes` list");
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function listAt(value: unknown, key: string): unknown[] {
  const list = isRecord(value) ? value[key] : undefined;
  return Array.isArray(list) ? list : [];
}

function stringAt(value: unknown, key: string): string | undefined {
  const s = isRecord(value) ? value[key] : undefined;
  return typeof s === "string" && s ? s : undefined;
}
