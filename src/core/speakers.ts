import { findCastMember, type CastMember } from "./cast.ts";
import type { Turn } from "./turn.ts";

export const MAX_NAME_LENGTH = 32;

/**
 * A display name made safe to stand before a colon in a prompt: one line, no label or markdown
 * characters, and never the persona's own name nor any cast member's (a user called "Friend" or
 * "Joey" must not fake a character's turns).
 */
export function speakerName(displayName: string, personaName: string, cast: readonly CastMember[] = []): string {
  const name = displayName
    .normalize("NFKC")
    .replace(/[\p{C}:()[\]{}<>*_~`|@#\\]/gu, " ")
    .replace(/\s+/g, " ")
    .trim()
    .slice(0, MAX_NAME_LENGTH)
    .trim();
  if (!name) return "Someone";
  return name.toLowerCase() === personaName.toLowerCase() || findCastMember(cast, name) ? `User ${name}` : name;
}

/** The most recent distinct human speakers, newest first. */
export function recentSpeakers(turns: readonly Turn[]): string[] {
  const names: string[] = [];
  for (let i = turns.length - 1; i >= 0; i--) {
    const turn = turns[i]!;
    if (!turn.fromFriend && !names.includes(turn.author)) names.push(turn.author);
  }
  return names;
}

/** The person Friend is answering: the author of the newest human turn. */
export function addressee(turns: readonly Turn[]): string {
  return recentSpeakers(turns)[0] ?? "Someone";
}
