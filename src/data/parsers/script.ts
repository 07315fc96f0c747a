import { basename, extname } from "node:path";
import { InputError } from "../errors.ts";
import { SceneCollector, countSkip, mergeSkipCounts, type SkipCounts, type Transcript } from "../transcript.ts";
import { listFiles, readTextFile } from "./read-input.ts";
import { classifyScriptLine } from "./script-lines.ts";

/**
 * Parses a plain-text script: the Kaggle single file (episodes separated by upper-cased titles)
 * or one episode's .txt. `[Scene: …]` headings, `[Time Lapse]`, titles and `End` lines cut scenes.
 */
export function parseScriptText(text: string, episode: string): Transcript {
  const collector = new SceneCollector(episode);
  const skipped: SkipCounts = {};
  for (const line of text.split(/\r?\n|\r/)) {
    if (line.includes("\uFFFD")) {
      countSkip(skipped, "invalid UTF-8");
      continue;
    }
    for (const item of classifyScriptLine(line)) {
      switch (item.kind) {
        case "dialogue":
          collector.add({ speakers: item.speakers, text: item.text });
          break;
        case "episode title":
          countSkip(skipped, "episode title");
          collector.startEpisode(item.title);
          break;
        case "scene heading":
        case "end marker":
          countSkip(skipped, item.kind);
          collector.breakScene();
          break;
        case "skip":
          countSkip(skipped, item.reason);
          break;
      }
    }
  }
  return { scenes: collector.scenes, skipped };
}

/** The Kaggle `Friends_Transcript.txt`: episodes are named by the titles inside it. */
export function parseKaggleFile(file: string): Transcript {
  return parseScriptText(readTextFile(file), basename(file));
}

/**
 * A folder of `S01E01 Monica Gets A Roommate.txt` files, one per episode, in name order.
 * The file name names the episode; a title line inside only starts a new scene.
 */
export function parseEpisodeFolder(folder: string): Transcript {
  const files = listFiles(folder, [".txt"]);
  if (files.length === 0) throw new InputError(folder, undefined, "no .txt episode files in this folder");
  const transcript: Transcript = { scenes: [], skipped: {} };
  for (const file of files) {
    const episode = basename(file, extname(file));
    const parsed = parseScriptText(readTextFile(file), episode);
    for (const scene of parsed.scenes) transcript.scenes.push({ ...scene, episode });
    mergeSkipCounts(transcript.skipped, parsed.skipped);
  }
  return transcript;
}
