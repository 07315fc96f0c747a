import { soleMainSpeaker } from "./speakers.ts";
import type { PairFilter } from "./sft/pairs.ts";
import type { Scene } from "./transcript.ts";

/** One line of a scene in an evaluation item. */
export interface EvalLine {
  /** Who said it; several speakers are joined with " and " ("Monica and Phoebe"). */
  speaker: string;
  text: string;
}

/**
 * One line of `friend data eval`'s JSONL: a held-out moment of a scene. The persona stands in for
 * the reply's speaker: the scene is what the bot's window would hold, `addressed` is the message it
 * answers, and `reply` is what was really said.
 */
export interface EvalItem {
  /** Stable across runs: `episode #scene:line` (1-based), so a rerun can skip what is done. */
  id: string;
  episode: string;
  /** The lines before `addressed` in the same scene, oldest first, at most a window's worth. */
  scene: EvalLine[];
  addressed: EvalLine;
  reply: EvalLine;
}

/**
 * Every moment of these scenes where a main character answers another (the `friend data sft`
 * rule, with its filter), with up to `contextLines` lines of the scene before it.
 */
export function evalItemsFrom(scenes: readonly Scene[], filter: PairFilter, contextLines: number): EvalItem[] {
  const items: EvalItem[] = [];
  const fits = (text: string) => text.length >= filter.minChars && text.length <= filter.maxChars;
  const sceneNumbers = new Map<string, number>();
  for (const scene of scenes) {
    const sceneNumber = (sceneNumbers.get(scene.episode) ?? 0) + 1;
    sceneNumbers.set(scene.episode, sceneNumber);
    const lines = scene.lines.map((l) => ({ speaker: l.speakers.join(" and "), text: l.text }));
    for (let i = 0; i + 1 < scene.lines.length; i++) {
      const a = soleMainSpeaker(scene.lines[i]!.speakers);
      const b = soleMainSpeaker(scene.lines[i + 1]!.speakers);
      if (!a || !b || a === b || !filter.characters.has(a) || !filter.characters.has(b) || !filter.replyAs.has(b)) continue;
      if (!fits(lines[i]!.text) || !fits(lines[i + 1]!.text)) continue;
      items.push({
        id: `${scene.episode} #${sceneNumber}:${i + 2}`,
        episode: scene.episode,
        scene: lines.slice(Math.max(0, i - contextLines), i),
        addressed: { speaker: a, text: lines[i]!.text },
        reply: { speaker: b, text: lines[i + 1]!.text },
      });
    }
  }
  return items;
}
