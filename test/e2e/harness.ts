import { rmSync } from "node:fs";
import { Writable } from "node:stream";
import { afterAll, afterEach, beforeAll, expect } from "vitest";
import { startFriend, type Friend } from "../../src/app.ts";
import type { EngineParts } from "../../src/engine.ts";
import { loadConfig, type Config } from "../../src/config/env.ts";
import { createLogger } from "../../src/log.ts";
import { FakeDiscord, type RestCall } from "../fakes/discord.ts";
import { FakeOpenAI } from "../fakes/openai-chat.ts";
import { writeTinyModelSet, type TinyModelSet } from "../gguf/tiny-models.ts";
import { TEST_BUILD } from "../local/helpers.ts";

export const OPENAI_KEY = "sk-test-key-never-logged-1234";

/** Log lines captured as parsed JSON, plus the raw text (to prove nothing secret reached it). */
export class LogCapture extends Writable {
  readonly lines: Record<string, unknown>[] = [];
  raw = "";
  override _write(chunk: Buffer, _enc: string, done: () => void): void {
    const text = chunk.toString();
    this.raw += text;
    for (const line of text.split("\n").filter(Boolean)) this.lines.push(JSON.parse(line));
    done();
  }
}

export interface World {
  discord: FakeDiscord;
  openai: FakeOpenAI;
  friend: Friend;
  config: Config;
  logs: LogCapture;
  stop(): Promise<void>;
}

/**
 * A running Friend against a fake Discord and a fake OpenAI, both on loopback: the real discord.js
 * client and the real openai SDK, nothing mocked in between.
 */
export async function startWorld(
  options: { env?: Record<string, string>; settings?: (c: Config) => void; parts?: EngineParts; discord?: FakeDiscord } = {},
): Promise<World> {
  const discord = options.discord ?? (await FakeDiscord.start());
  const openai = await FakeOpenAI.start();
  const config = loadConfig({
    DISCORD_TOKEN: discord.token,
    DISCORD_API_URL: discord.apiUrl,
    OPENAI_API_KEY: OPENAI_KEY,
    OPENAI_BASE_URL: openai.baseURL,
    OPENAI_MODEL: "ft:gpt-3.5-turbo-0125:friends::test",
    LOG_LEVEL: "debug",
    FRIEND_DB_PATH: ":memory:",
    ...options.env,
  });
  // Fast tests: stream edits as they come, short timeouts, quick retries.
  config.settings.generation.streamEditIntervalMs = 250;
  config.settings.generation.timeoutMs = 5000;
  options.settings?.(config);
  const logs = new LogCapture();
  const logger = createLogger({ level: "debug", secrets: [config.discord.token, OPENAI_KEY], destination: logs });
  const friend = await startFriend(config, logger, options.parts);
  return {
    discord,
    openai,
    friend,
    config,
    logs,
    async stop() {
      await friend.stop();
      await discord.stop();
      await openai.stop();
    },
  };
}

/** Waits until `check` returns something truthy, polling; fails with `what` after `timeoutMs`. */
export async function eventually<T>(check: () => T | undefined | null | false, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Waits until Friend has handled a message (answered, queued, refused as a duplicate, or ignored),
 * by its log line: the event-based way to prove a message was seen and not answered.
 */
export function handled(world: World, messageId: string, timeoutMs = 10_000): Promise<Record<string, unknown>> {
  return eventually(
    () => world.logs.lines.find((l) => l.msgId === messageId && (l.msg === "message ignored" || l.msg === "message received")),
    `Friend to handle message ${messageId}`,
    timeoutMs,
  );
}

/**
 * The tiny GGUF models for one test file: written before its tests, removed after them. `env`
 * points Friend's local backend at the script model (no adapter unless `extra` names one).
 */
/** Steps that undo what a test started (servers, processes, folders); after each test they run, the last added first. */
export function useCleanup(): Array<() => Promise<void>> {
  const steps: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const step of steps.splice(0).reverse()) await step();
  });
  return steps;
}

export function useTinyModels(): { models: () => TinyModelSet; env: (extra?: Record<string, string>) => Record<string, string> } {
  let set: TinyModelSet | undefined;
  beforeAll(() => {
    set = writeTinyModelSet();
  });
  afterAll(() => {
    if (set) rmSync(set.dir, { recursive: true, force: true });
  });
  const models = () => set!;
  return {
    models,
    // LLAMA_BUILD=native in the test's environment runs these on `npm run build:llama`'s binary.
    env: (extra = {}) => ({
      LLAMA_MODEL_PATH: models().model,
      LLAMA_LORA_PATH: "",
      LLAMA_THREADS: "1",
      LLAMA_CONTEXT_SIZE: "512",
      LLAMA_SEQUENCES: "2",
      LLAMA_BUILD: TEST_BUILD,
      ...extra,
    }),
  };
}

/** The text of an interaction's ephemeral reply, whether it answered at once or deferred and edited. */
export async function interactionReply(discord: FakeDiscord, token: string): Promise<{ content?: string; embeds?: unknown[]; flags?: number }> {
  const callback = await discord.waitForRest((c) => c.method === "POST" && c.path.startsWith("/interactions/") && c.path.includes(`/${token}/`));
  if (callback.body.type === 4) return callback.body.data;
  expect(callback.body.type).toBe(5); // deferred
  expect(callback.body.data.flags).toBe(64);
  const edit: RestCall = await discord.waitForRest((c) => c.method === "PATCH" && c.path.includes(`/webhooks/`) && c.path.includes(`/${token}/messages/@original`));
  return edit.body;
}
