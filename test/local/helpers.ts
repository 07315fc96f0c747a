import { Writable } from "node:stream";
import { pino, type Logger } from "pino";
import type { GenerateRequest } from "../../src/core/backend.ts";
import type { LocalGenerationStats } from "../../src/backends/local.ts";
import type { LlamaBuildChoice } from "../../src/config/local-defaults.ts";
import { loadSettings } from "../../src/config/settings.ts";
import type { Persona } from "../../src/core/persona.ts";
import type { Turn } from "../../src/core/turn.ts";

export const persona: Persona = loadSettings().persona;
/** The configured cast: the one list of speakers the cleaner and the prompt know. */
export const cast = loadSettings().cast;

/**
 * One llama.cpp thread: the tiny model gains nothing from two, and on a shared 2-core CI box
 * llama.cpp's spinning worker threads were measured 10× slower than one while other tests ran.
 */
export const TEST_THREADS = 1;

/**
 * The llama.cpp binary the local tests run: the prebuilt one, or with `LLAMA_BUILD=native` in the
 * environment the one `npm run build:llama` made (the same suite must pass on both).
 */
export const TEST_BUILD: LlamaBuildChoice = process.env.LLAMA_BUILD === "native" ? "native" : "prebuilt";

let clock = 1_000;
export function turn(author: string, text: string, fromFriend = author === persona.name): Turn {
  return { author, text, fromFriend, at: clock++ };
}

export function request(channelId: string, turns: readonly Turn[], overrides: Partial<GenerateRequest> = {}): GenerateRequest {
  return {
    channelId,
    persona,
    cast,
    turns,
    stop: [],
    maxTokens: 40,
    temperature: 0,
    topP: 1,
    signal: new AbortController().signal,
    ...overrides,
  };
}

export interface Collected {
  chunks: string[];
  text: string;
  stats: LocalGenerationStats;
}

/** Reads a generation to the end, as the bot would. */
export async function collect(gen: AsyncGenerator<string, LocalGenerationStats, undefined>): Promise<Collected> {
  const chunks: string[] = [];
  for (;;) {
    const next = await gen.next();
    if (next.done) return { chunks, text: chunks.join(""), stats: next.value };
    chunks.push(next.value);
  }
}

/** A debug-level pino logger whose JSON lines are kept in `lines`. */
export function capturingLogger(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString("utf8").split("\n")) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: "debug" }, sink), lines };
}
