import { soleMainSpeaker } from "../speakers.ts";
import type { Scene } from "../transcript.ts";
import type { TokenCounter } from "./token-counter.ts";

/** The chunk size the original LoRA run trained on. */
export const DEFAULT_CHUNK_TOKENS = 128;

/**
 * Runs of consecutive lines each spoken by one main character, as `Name: line`.
 * A guest's line, a group line or a scene change ends a run.
 */
export function dialogueRuns(scenes: readonly Scene[]): string[][] {
  const runs: string[][] = [];
  for (const scene of scenes) {
    let run: string[] = [];
    for (const line of scene.lines) {
      const speaker = soleMainSpeaker(line.speakers);
      if (speaker) {
        run.push(`${speaker}: ${line.text}`);
      } else if (run.length) {
        runs.push(run);
        run = [];
      }
    }
    if (run.length) runs.push(run);
  }
  return runs;
}

/**
 * Packs each run's lines into chunks of at most `maxTokens`, cutting between lines.
 * A line too long for a chunk on its own is cut between words instead. Chunks never span runs,
 * so no chunk joins two conversations the script kept apart.
 */
export function packChunks(runs: readonly string[][], counter: TokenCounter, maxTokens: number): string[] {
  const chunks: string[] = [];
  for (const run of runs) {
    let current = "";
    for (const line of run) {
      for (const piece of splitLongLine(line, counter, maxTokens)) {
        const joined = current ? `${current}\n${piece}` : piece;
        if (!current || counter.count(joined) <= maxTokens) {
          current = joined;
        } else {
          chunks.push(current);
          current = piece;
        }
      }
    }
    if (current) chunks.push(current);
  }
  return chunks;
}

/** A line as is when it fits; otherwise pieces cut between words, each within `maxTokens`. */
export function splitLongLine(line: string, counter: TokenCounter, maxTokens: number): string[] {
  if (counter.count(line) <= maxTokens) return [line];
  const pieces: string[] = [];
  let current = "";
  for (const word of line.split(" ")) {
    const joined = current ? `${current} ${word}` : word;
    if (!current || counter.count(joined) <= maxTokens) {
      current = joined;
    } else {
      pieces.push(current);
      current = word;
    }
  }
  if (current) pieces.push(current);
  return pieces;
}

export interface ChunkStats {
  chunks: number;
  lines: number;
  runs: number;
  maxTokens: number;
  meanTokens: number;
  /** Chunks over the limit: only a single word longer than a whole chunk makes one. */
  overLimit: number;
}

export function chunkStats(runs: readonly string[][], chunks: readonly string[], counter: TokenCounter, limit: number): ChunkStats {
  let total = 0;
  let max = 0;
  let overLimit = 0;
  for (const chunk of chunks) {
    const tokens = counter.count(chunk);
    total += tokens;
    max = Math.max(max, tokens);
    if (tokens > limit) overLimit++;
  }
  return {
    chunks: chunks.length,
    lines: runs.reduce((n, run) => n + run.length, 0),
    runs: runs.length,
    maxTokens: max,
    meanTokens: chunks.length ? Math.round(total / chunks.length) : 0,
    overLimit,
  };
}
