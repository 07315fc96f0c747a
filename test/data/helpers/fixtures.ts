import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Scene } from "../../../src/data/transcript.ts";

/** Sample transcripts written for these tests: original lines in the Friends style. */
export const FIXTURES = fileURLToPath(new URL("../fixtures/", import.meta.url));
export const fixture = (name: string) => join(FIXTURES, name);

/** A fresh temporary folder; call the returned function to remove it. */
export function tempFolder(): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), "friend-data-"));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** Scenes as `Speaker: text` strings, easy to compare whole. */
export function sceneScript(scenes: readonly Scene[]): { episode: string; lines: string[] }[] {
  return scenes.map((scene) => ({ episode: scene.episode, lines: scene.lines.map((l) => `${l.speakers.join("+")}: ${l.text}`) }));
}
