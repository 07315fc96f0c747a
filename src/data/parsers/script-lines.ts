import { normaliseSpeakerLabel } from "../speakers.ts";
import type { SkipReason } from "../transcript.ts";

/**
 * What one physical line of a plain-text script (the Kaggle file, or one episode's .txt) holds.
 * A run-on line, where a whole episode was flattened with two spaces between turns, holds many.
 */
export type ScriptItem =
  | { kind: "dialogue"; speakers: string[]; text: string }
  | { kind: "episode title"; title: string }
  | { kind: "scene heading" }
  | { kind: "end marker" }
  | { kind: "skip"; reason: SkipReason };

const END_MARKER = /^(?:the\s+)?end\.?$/i;
/** `Written by: …`, `Teleplay by: …`, `Story by: …`, `Transcribed by: …`. */
const CREDITS = /^(?:[a-z]+\s+){0,3}by\s*:/i;
/** Labels are short; anything longer before the colon is prose that happens to contain one. */
const SPEAKER_LABEL = /^([A-Z][^:?!"]{0,59}?)\s*:+\s*(.*)$/s;
const MAX_LABEL_WORDS = 6;
/** Inside run-on lines only ALL-CAPS labels start a turn, so `Wait.  Listen: …` stays one turn. */
const CAPS_LABEL = /^[A-Z][A-Z.'\- ]*(?:(?:\/|&|,|\band\b)\s*[A-Z][A-Z.'\- ]*)*$/;

/** Classifies one line of a script. Pure: the parser turns the items into scenes and counts. */
export function classifyScriptLine(line: string): ScriptItem[] {
  const trimmed = line.trim();
  if (!trimmed) return [];
  if (END_MARKER.test(trimmed)) return [{ kind: "end marker" }];
  if (CREDITS.test(trimmed)) return [{ kind: "skip", reason: "credits" }];
  if (isEpisodeTitle(trimmed)) return [{ kind: "episode title", title: trimmed }];

  const items: ScriptItem[] = [];
  splitRunOnLine(trimmed).forEach((segment, index) => {
    const item = classifySegment(segment, index === 0);
    const previous = items.at(-1);
    if (item === "continuation") {
      // Two spaces inside one turn: typewriter spacing after a full stop, not a new speaker.
      if (previous?.kind === "dialogue") previous.text = joinText(previous.text, stripDirections(segment));
      else if (!isNoSpeakerSkip(previous)) items.push({ kind: "skip", reason: "no speaker label" });
    } else {
      items.push(item);
    }
  });
  return items.map((item) =>
    item.kind === "dialogue" && !item.text ? { kind: "skip", reason: "only stage directions" } : item,
  );
}

function isNoSpeakerSkip(item: ScriptItem | undefined): boolean {
  return item?.kind === "skip" && item.reason === "no speaker label";
}

function classifySegment(segment: string, isFirst: boolean): ScriptItem | "continuation" {
  if (isWrapped(segment, "[", "]")) return { kind: "scene heading" };
  if (isWrapped(segment, "(", ")")) return { kind: "skip", reason: "stage direction" };
  if (isWrapped(segment, "{", "}")) return { kind: "skip", reason: "writer note" };

  const match = SPEAKER_LABEL.exec(segment);
  if (match) {
    const [, label = "", text = ""] = match;
    const labelWithoutDirections = label.replace(/\([^)]*\)/g, "").trim();
    const isShort = labelWithoutDirections.split(/\s+/).length <= MAX_LABEL_WORDS;
    if (isShort && (isFirst || CAPS_LABEL.test(labelWithoutDirections))) {
      const speakers = normaliseSpeakerLabel(label);
      if (speakers) return { kind: "dialogue", speakers, text: stripDirections(text) };
    }
  }
  return isFirst ? { kind: "skip", reason: "no speaker label" } : "continuation";
}

/**
 * Episode titles are upper-cased (`THE ONE WHERE MONICA GETS A NEW ROOMATE (THE PILOT…)`),
 * sometimes after an episode number. An all-caps line that reads as `NAME: …` is shouted
 * dialogue, and one ending like a sentence (`OH MY GOD!`) is a shout that lost its speaker.
 */
export function isEpisodeTitle(line: string): boolean {
  if (/[a-z]/.test(line) || !/[A-Z].*[A-Z]/.test(line)) return false;
  if (/^\d*\s*THE (?:ONE|LAST ONE)\b/.test(line)) return true;
  return !SPEAKER_LABEL.test(line) && !/^[[({]/.test(line) && !/[.!?]$/.test(line);
}

/** True when the whole segment is one bracketed group: `(He (sort of) leaves.)`. */
function isWrapped(segment: string, open: string, close: string): boolean {
  if (!segment.startsWith(open) || !segment.endsWith(close)) return false;
  let depth = 0;
  for (let i = 0; i < segment.length; i++) {
    if (segment[i] === open) depth++;
    else if (segment[i] === close && --depth === 0) return i === segment.length - 1;
  }
  return false;
}

/** Splits at runs of two or more spaces, but never inside (), [] or {}. */
export function splitRunOnLine(line: string): string[] {
  const segments: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (ch === "(" || ch === "[" || ch === "{") depth++;
    else if ((ch === ")" || ch === "]" || ch === "}") && depth > 0) depth--;
    else if (ch === " " && line[i + 1] === " " && depth === 0) {
      segments.push(line.slice(start, i));
      while (line[i + 1] === " ") i++;
      start = i + 1;
    }
  }
  segments.push(line.slice(start));
  return segments.map((s) => s.trim()).filter(Boolean);
}

/**
 * Removes directions from inside a line: `(to Ross)`, `[aside]`, `{writer note}`.
 * An unclosed `(` runs to the end of the line, the way transcribers left them.
 */
export function stripDirections(text: string): string {
  let result = text;
  // Most lines hold no direction at all; skip the bracket passes for them (the parser's hot path).
  if (/[()[\]{}]/.test(result)) {
    let previous;
    do {
      previous = result;
      result = result.replace(/\([^()]*\)|\[[^[\]]*\]|\{[^{}]*\}/g, " ");
    } while (result !== previous);
    result = result.replace(/[([{].*$/, "").replace(/[)\]}]/g, "");
  }
  return result
    .replace(/\s+/g, " ")
    .replace(/\s+([,.!?;:])/g, "$1")
    .replace(/^[\s,;:]+/, "")
    .trim();
}

function joinText(a: string, b: string): string {
  return !a ? b : !b ? a : `${a} ${b}`;
}
