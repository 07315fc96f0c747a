import type { CastMember } from "../core/cast.ts";
import { knownSpeakers, readLabel, type KnownSpeakers } from "../reply/speakers.ts";

/** The speakers the bot's cleaner knew for a reply: the persona, the cast and the window's names. */
export function speakersFor(personaName: string, windowNames: Iterable<string>, cast: readonly CastMember[]): KnownSpeakers {
  return knownSpeakers(personaName, windowNames, cast);
}

/** The raw reply opens with the persona's own label (`Friend:`, `**Friend:**`, `Friend：`…), as the cleaner reads labels. */
export function leaksLabel(raw: string, speakers: KnownSpeakers): boolean {
  const label = readLabel(raw, speakers, { final: true });
  return label !== null && label !== "maybe" && label.kind === "persona";
}

/**
 * Some line of the raw reply is another speaker's (`\nRoss: (entering) Hey Ben!`), read as the
 * cleaner reads labels, past any of the persona's own. A stop sequence that caught such a line
 * before it showed is counted by the caller from how the generation ended.
 */
export function hasFollowOnSpeaker(raw: string, speakers: KnownSpeakers): boolean {
  for (const line of raw.replace(/\r/g, "").split(/[\n\u0085\u2028\u2029\v\f]/)) {
    let at = 0;
    for (;;) {
      const label = readLabel(line, speakers, { from: at, final: true });
      if (label === null || label === "maybe") break;
      if (label.kind === "other") return true;
      at = label.end;
    }
  }
  return false;
}

/** What the cleaner took away, as the pieces of raw text around the reply it kept (where it kept one whole piece). */
export function cutPieces(raw: string, cleaned: string): string[] {
  if (!cleaned) return raw.trim() ? [raw] : [];
  const at = raw.indexOf(cleaned);
  if (at < 0) return [];
  return [raw.slice(0, at), raw.slice(at + cleaned.length)].filter((piece) => piece.trim() !== "");
}
