import { readFileSync } from "node:fs";
import { z } from "zod";
import type { Settings } from "../config/settings.ts";
import { speakerName } from "../core/speakers.ts";
import { mainCharacterNamed } from "../data/speakers.ts";
import type { EvalItem } from "../data/eval-items.ts";

const line = z.object({ speaker: z.string(), text: z.string() });
const itemSchema = z.object({
  id: z.string().min(1),
  episode: z.string().default(""),
  scene: z.array(line),
  addressed: line,
  reply: line,
});

/** A line of the items file that is not an item at all. */
export interface BadItem {
  line: number;
  problem: string;
}

export const SKIP_KINDS = ["unknown_speaker", "empty_reply", "oversized"] as const;
export type SkipKind = (typeof SKIP_KINDS)[number];

export interface ItemsFile {
  items: EvalItem[];
  bad: BadItem[];
}

/** Reads `friend data eval`'s JSONL; every line that is not an item is reported with its number. */
export function readItems(path: string): ItemsFile {
  const text = readFileSync(path, "utf8");
  const items: EvalItem[] = [];
  const bad: BadItem[] = [];
  const ids = new Set<string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    if (raw.trim() === "") return;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      bad.push({ line: i + 1, problem: "not valid JSON" });
      return;
    }
    const parsed = itemSchema.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      const where = issue.path.length ? issue.path.join(".") : "the item";
      bad.push({ line: i + 1, problem: /received undefined$/.test(issue.message) ? `missing ${where}` : `${where}: ${issue.message}` });
      return;
    }
    if (ids.has(parsed.data.id)) {
      bad.push({ line: i + 1, problem: `id "${parsed.data.id}" is used twice` });
      return;
    }
    ids.add(parsed.data.id);
    items.push(parsed.data);
  });
  return { items, bad };
}

/**
 * Why the bot could not be asked this item as it is, or null. Unknown speaker: the reply is not
 * one of the six main characters (the voices the models learn), or a speaker's name has nothing
 * left once made safe for a prompt. Oversized: more scene lines than the bot's window holds, or a
 * line longer than a message the bot takes whole.
 */
export function skipReason(item: EvalItem, settings: Settings): SkipKind | null {
  if (item.reply.text.trim() === "") return "empty_reply";
  if (!mainCharacterNamed(item.reply.speaker)) return "unknown_speaker";
  const lines = [...item.scene, item.addressed];
  if (lines.some((l) => speakerName(l.speaker, settings.persona.name) === "Someone" && l.speaker.trim() !== "Someone")) return "unknown_speaker";
  if (lines.length > settings.window.maxTurns || [...lines, item.reply].some((l) => l.text.length > settings.window.maxInputChars)) return "oversized";
  return null;
}
