import { MAIN_CHARACTERS, type MainCharacter } from "../../core/cast.ts";
import { soleMainSpeaker } from "../speakers.ts";
import type { Scene } from "../transcript.ts";

/** Line A said by one main character, then line B said straight after by another, in one scene. */
export interface ExchangePair {
  episode: string;
  userSpeaker: MainCharacter;
  assistantSpeaker: MainCharacter;
  /** Line A, without its speaker's name. */
  user: string;
  /** Line B, without its speaker's name: what the fine-tuned model learns to say. */
  assistant: string;
}

export interface PairFilter {
  /** Both lines must be spoken by one of these. */
  characters: ReadonlySet<MainCharacter>;
  /** Line B must be spoken by one of these (a subset narrows whose voice the model learns). */
  replyAs: ReadonlySet<MainCharacter>;
  /** Each line's length in characters must fall within these bounds. */
  minChars: number;
  maxChars: number;
}

export const DEFAULT_PAIR_FILTER: PairFilter = {
  characters: new Set(MAIN_CHARACTERS),
  replyAs: new Set(MAIN_CHARACTERS),
  minChars: 2,
  maxChars: 500,
};

/**
 * Every pair that follows the original experiment's rule: consecutive lines, same scene,
 * two different main characters each speaking alone. Pairs may overlap (B of one is A of the next).
 */
export function findExchangePairs(scenes: readonly Scene[], filter: PairFilter = DEFAULT_PAIR_FILTER): ExchangePair[] {
  const pairs: ExchangePair[] = [];
  const fits = (text: string) => text.length >= filter.minChars && text.length <= filter.maxChars;
  for (const scene of scenes) {
    for (let i = 0; i + 1 < scene.lines.length; i++) {
      const a = scene.lines[i]!;
      const b = scene.lines[i + 1]!;
      const userSpeaker = soleMainSpeaker(a.speakers);
      const assistantSpeaker = soleMainSpeaker(b.speakers);
      if (!userSpeaker || !assistantSpeaker || userSpeaker === assistantSpeaker) continue;
      if (!filter.characters.has(userSpeaker) || !filter.characters.has(assistantSpeaker)) continue;
      if (!filter.replyAs.has(assistantSpeaker)) continue;
      if (!fits(a.text) || !fits(b.text)) continue;
      pairs.push({ episode: scene.episode, userSpeaker, assistantSpeaker, user: a.text, assistant: b.text });
    }
  }
  return pairs;
}
