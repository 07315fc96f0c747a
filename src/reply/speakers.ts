import type { MainCharacter } from "../core/cast.ts";

/**
 * The six main characters, in the order their invented lines most often followed the seed models'
 * replies (`Ross: (entering) Hey Ben!` first): OpenAI takes only four stop sequences.
 */
export const MAIN_CAST: readonly MainCharacter[] = ["Ross", "Rachel", "Monica", "Chandler", "Joey", "Phoebe"];

/** Labels that chat-tuned models leak besides character names. */
const CHAT_ROLE_LABELS = ["User", "Human", "Assistant", "System"];

/** Capitalised words that often start a line with a colon without being a speaker. */
const NOT_SPEAKERS = new Set(
  [
    "note", "notes", "ps", "p.s.", "edit", "update", "warning", "tip", "step", "example", "answer", "question", "fact",
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "today", "tomorrow", "tonight",
    "yesterday", "pros", "cons", "option", "rule", "hint", "spoiler", "translation", "source", "summary", "also",
  ],
);

const NAME_WORD = String.raw`[A-Z][A-Za-z'’.\-]*`;
const JOINER = String.raw`(?:and|&|\/)`;
/** `Ross`, `Mr. Treeger`, `Monica and Phoebe`, `PHOE/MNCA` — up to four capitalised words. */
const GENERIC_NAME = String.raw`${NAME_WORD}(?:(?:\s+|\s*\/\s*)(?:${JOINER}\s+)?${NAME_WORD}){0,3}`;
const MARK = String.raw`[*_]{0,2}`;
const DIRECTION = String.raw`(?:\s*\([^)\n]{0,80}\))?`;

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * Matches a speaker label at the start of a line: `Ross:`, `**Friend:**`, `Joey (to Rachel):`.
 * Group 1 is the name. Known names match in any case; other names must be capitalised.
 */
export function labelPattern(knownNames: Iterable<string>): RegExp {
  const known = [...new Set([...knownNames].filter(Boolean))].map(escapeRegExp).join("|");
  const name = known ? `(?:${known})|${GENERIC_NAME}` : GENERIC_NAME;
  return new RegExp(`^[ \\t]*${MARK}(${name})${MARK}${DIRECTION}\\s*${MARK}\\s*:{1,2}${MARK}(?![\\w/])[ \\t]*`, "i");
}

/** Whether a label's name is really a speaker (and not "Note:" or "Monday:"). */
export function isSpeakerName(name: string, knownNames: ReadonlySet<string>): boolean {
  const lower = name.toLowerCase();
  if (knownNames.has(lower)) return true;
  if (NOT_SPEAKERS.has(lower)) return false;
  // The `i` flag lets lowercase words through the generic pattern; a generic speaker is capitalised.
  return /^[A-Z]/.test(name) && name.split(/\s+/).every((word) => /^(?:[A-Z]|and$|&$|\/)/.test(word));
}

/** Names the cleaner and the stop sequences treat as speakers, lower-cased. */
export function knownSpeakers(personaName: string, windowNames: Iterable<string>): Set<string> {
  return new Set([personaName, ...MAIN_CAST, ...CHAT_ROLE_LABELS, ...windowNames].map((n) => n.toLowerCase()));
}

/**
 * Stop sequences for a generation, most likely next speaker first: the people recently seen in the
 * window (most recent first), then the main cast. Each starts with "\n" so it matches a new line.
 */
export function stopSequences(personaName: string, recentSpeakers: readonly string[], limit: number): string[] {
  const names: string[] = [];
  for (const name of [...recentSpeakers, ...MAIN_CAST]) {
    if (name.toLowerCase() === personaName.toLowerCase()) continue;
    if (!names.some((n) => n.toLowerCase() === name.toLowerCase())) names.push(name);
  }
  return names.slice(0, limit).map((name) => `\n${name}:`);
}
