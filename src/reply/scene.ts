import { findCastMember, type CastMember } from "../core/cast.ts";
import { ReplyCleaner } from "./clean.ts";
import { knownSpeakers, readLabel } from "./speakers.ts";

/** The most follow-on lines a scene may keep (`/scene on lines:N`). */
export const MAX_SCENE_LINES = 6;

/** One follow-on line kept in scene mode, to be posted under its speaker's name. */
export interface SceneLine {
  speaker: CastMember;
  text: string;
}

export interface SceneOptions {
  personaName: string;
  /** Names in the channel window: the people the model must never speak for. */
  windowNames: readonly string[];
  cast: readonly CastMember[];
  maxLines: number;
}

/** A stage direction at the start of a line: `(entering) Hey Ben!`. */
const LEADING_DIRECTION = /^\(([^()\n]{1,80})\)\s*/;
/** A line that is only a stage direction: `(Ross enters)`. */
const DIRECTION_ONLY = /^[*_\s]*\(([^()\n]{1,80})\)[*_\s]*$/;

/**
 * The invented scene after the persona's reply, kept in scene mode: the lines that follow the
 * reply exactly where the cleaner cut it, each labelled by a cast member, up to `maxLines`. The
 * scene ends at the first line that speaks for a user (by their name in the window), by someone not
 * in the cast, or with no label; nothing after that is kept. Stage directions become italics.
 */
export function sceneLines(raw: string, options: SceneOptions): SceneLine[] {
  const { personaName, windowNames, cast, maxLines } = options;
  const speakers = knownSpeakers(personaName, windowNames, cast);
  const lines = raw.replace(/\r/g, "").split("\n");
  const start = lines.findIndex((line) => {
    const label = readLabel(line, speakers, { final: true });
    return label !== null && label !== "maybe" && label.kind === "other";
  });
  if (start < 0 || maxLines <= 0) return [];
  // Anything after the first cut is never kept: the reply must end exactly where the scene begins.
  const before = new ReplyCleaner({ personaName, windowNames, cast }).push(lines.slice(0, start).map((l) => `${l}\n`).join(""));
  if (before.done) return [];
  // Users appear in the window as typed, or as "User Ross" when their name is a character's.
  const users = new Set(windowNames.flatMap((name) => [name, name.replace(/^User /, "")]).map((name) => name.toLowerCase()));
  const scene: SceneLine[] = [];
  for (const line of lines.slice(start)) {
    if (scene.length >= maxLines) break;
    if (line.trim() === "" || DIRECTION_ONLY.test(line)) continue;
    const label = readLabel(line, speakers, { final: true });
    if (label === null || label === "maybe") break;
    const speaker = findCastMember(cast, label.name);
    if (!speaker || [speaker.name, label.name].some((name) => users.has(name.toLowerCase()))) break;
    // The line itself goes through the cleaner as its speaker: an inline label in it ends the scene.
    const cleaner = new ReplyCleaner({ personaName: speaker.name, windowNames, cast }).push(`${line.slice(label.end)}\n`);
    let text = cleaner.text();
    if (!text) break;
    text = text.replace(LEADING_DIRECTION, (_, direction: string) => `*(${direction.trim()})* `);
    if (label.direction) text = `*(${label.direction.trim()})* ${text}`;
    scene.push({ speaker, text });
    if (cleaner.done) break;
  }
  return scene;
}
