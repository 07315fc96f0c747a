/**
 * Saved channel states with real llama.cpp inference: a channel whose sequence is taken, or that
 * returns after a restart, loads its state and replies exactly as it would have without losing it;
 * a state for anything else (another model, adapter, scale, context, KV type) is never loaded; a
 * damaged one is never loaded; a reset or a changed window never brings back what was removed.
 *
 * The model is a small synthetic Llama with random weights (test/gguf/synthetic-llama.ts): its
 * greedy continuation depends on every token of the prompt, so equal replies mean equal states.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { LocalBackend, type LocalBackendOptions } from "../../src/backends/local.ts";
import { LocalModelLoader } from "../../src/backends/local/model-loader.ts";
import { parseModelSource } from "../../src/core/model-source.ts";
import type { Turn } from "../../src/core/turn.ts";
import { pino } from "pino";
import { writeSyntheticLlama, writeSyntheticLora, type LlamaShape } from "../gguf/synthetic-llama.ts";
import { capturingLogger, collect, persona, request, TEST_BUILD, TEST_THREADS, turn, type Collected } from "./helpers.ts";

const SHAPE: LlamaShape = { embedding: 128, feedForward: 256, layers: 2, heads: 4, kvHeads: 2, vocab: 1200, contextLength: 2048 };
const dir = mkdtempSync(join(tmpdir(), "friend-saved-state-"));
const files = {
  model: join(dir, "model.gguf"),
  otherModel: join(dir, "other-model.gguf"),
  adapter: join(dir, "adapter.gguf"),
  otherAdapter: join(dir, "other-adapter.gguf"),
};
let states = 0;
const freshStateDir = () => join(dir, `states-${states++}`);
const backends: LocalBackend[] = [];

function backend(options: Partial<LocalBackendOptions> = {}): LocalBackend {
  const b = new LocalBackend({ modelPath: files.model, threads: TEST_THREADS, build: TEST_BUILD, gpuLayers: 0, contextSize: 512, sequences: 3, ...options });
  backends.push(b);
  return b;
}

beforeAll(() => {
  writeSyntheticLlama(files.model, SHAPE, "f16");
  // The same layout and size, other weights: only the weight sample in the model's identity tells them apart.
  writeSyntheticLlama(files.otherModel, SHAPE, "f16", 500);
  writeSyntheticLora(files.adapter, SHAPE, 4);
  writeSyntheticLora(files.otherAdapter, SHAPE, 4, 2000);
});

afterEach(async () => {
  for (const b of backends.splice(0)) await b.close();
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const LINES = ["so what do you think about the new coffee place", "i cannot believe you said that to my mother", "is it any good at all", "we were on a break", "could this be any more awkward"];
const REPLY_TOKENS = 10;

async function say(b: LocalBackend, channelId: string, turns: readonly Turn[]): Promise<Collected> {
  return collect(b.generate(request(channelId, turns, { maxTokens: REPLY_TOKENS })));
}

/**
 * The scripted conversation, as the warm run answers it: each turn, every channel in order gets a
 * new line and answers it; the replies go into the windows. Returns every request's channel and window.
 */
async function script(b: LocalBackend, channels: readonly string[], turns: number): Promise<Array<{ channel: string; window: Turn[]; reply: Collected }>> {
  const windows = new Map<string, Turn[]>();
  const steps: Array<{ channel: string; window: Turn[]; reply: Collected }> = [];
  for (let t = 0; t < turns; t++) {
    for (const [c, channel] of channels.entries()) {
      const window = [...(windows.get(channel) ?? []), turn(`User${c}`, `${LINES[(t + c) % LINES.length]} (${t})`)];
      const reply = await say(b, channel, window);
      steps.push({ channel, window, reply });
      windows.set(channel, [...window, turn(persona.name, reply.text.trim() || "hm")]);
    }
  }
  return steps;
}

describe("a channel returning to a taken sequence, or after a restart", () => {
  it("replies token for token as without eviction, and evaluates only what is new", async () => {
    const channels = ["A", "B", "C"];
    // The reference: a sequence for every channel, nothing ever taken or saved. Four turns, then a fifth after the "restart".
    const steps = await script(backend({ sequences: 3 }), channels, 5);
    const beforeRestart = steps.slice(0, 4 * channels.length);
    const afterRestart = steps.slice(4 * channels.length);

    // The same requests on one sequence: every turn takes the sequence from the channel before.
    const stateDir = freshStateDir();
    const evicting = backend({ sequences: 1, stateDir });
    const replies: Collected[] = [];
    for (const step of beforeRestart) replies.push(await say(evicting, step.channel, step.window));
    expect(replies.map((r) => r.text)).toEqual(beforeRestart.map((s) => s.reply.text));
    expect(replies.map((r) => r.stats.completionTokens)).toEqual(beforeRestart.map((s) => s.reply.stats.completionTokens));
    // From its second turn on, each channel loads its state and evaluates what the warm run did.
    const returning = replies.slice(channels.length);
    expect(returning.map((r) => r.stats.evaluatedPromptTokens)).toEqual(beforeRestart.slice(channels.length).map((s) => s.reply.stats.evaluatedPromptTokens));
    for (const r of returning) expect(r.stats.restoredPromptTokens).toBeGreaterThan(r.stats.evaluatedPromptTokens);
    expect(evicting.describe().savedStates).toMatchObject({ files: 3 });

    // A restart: the graceful stop saves what the sequences hold; the next process loads it.
    await evicting.saveState(Date.now() + 30_000);
    await evicting.close();
    const restarted = backend({ sequences: 1, stateDir });
    const next: Collected[] = [];
    for (const step of afterRestart) next.push(await say(restarted, step.channel, step.window));
    expect(next.map((r) => r.text)).toEqual(afterRestart.map((s) => s.reply.text));
    expect(next.map((r) => r.stats.evaluatedPromptTokens)).toEqual(afterRestart.map((s) => s.reply.stats.evaluatedPromptTokens));
  });

  it("without a state folder, a returning channel evaluates its whole prompt (the replies are the same)", async () => {
    const steps = await script(backend({ sequences: 2 }), ["A", "B", "C"], 2);
    const b = backend({ sequences: 1 });
    for (const step of steps) {
      const out = await say(b, step.channel, step.window);
      expect(out.text).toBe(step.reply.text);
      expect(out.stats.evaluatedPromptTokens).toBe(out.stats.promptTokens);
    }
    expect(b.describe().savedStates).toBeUndefined();
  });
});

describe("periodic saves (LLAMA_STATE_SAVE_TURNS)", () => {
  /** Waits until the backend's cache holds `files` states: periodic saves run once the reply is done. */
  async function untilSaved(b: LocalBackend, files: number): Promise<void> {
    for (let i = 0; i < 200 && (b.describe().savedStates?.files ?? 0) < files; i++) await new Promise((r) => setTimeout(r, 25));
    expect(b.describe().savedStates?.files).toBe(files);
  }

  it("saves after every N turns, so a process killed without its graceful stop comes back warm and replies as before", async () => {
    const steps = await script(backend({ sequences: 2 }), ["A"], 5);
    const stateDir = freshStateDir();
    const first = backend({ sequences: 2, stateDir, stateSaveTurns: 2 });
    await say(first, "A", steps[0]!.window);
    // One turn: nothing saved yet (the save would run right after the reply; give it the time it would take).
    await new Promise((r) => setTimeout(r, 300));
    expect(first.describe().savedStates?.files).toBe(0);
    await say(first, "A", steps[1]!.window);
    await untilSaved(first, 1);
    await say(first, "A", steps[2]!.window);
    // Killed: no saveState, the sequences simply gone. The next process finds the state of turn 2.
    await first.close();
    const next = backend({ sequences: 2, stateDir, stateSaveTurns: 2 });
    const after = await say(next, "A", steps[3]!.window);
    expect(after.text).toBe(steps[3]!.reply.text);
    expect(after.stats.restoredPromptTokens).toBeGreaterThan(0);
    // Turn 2's prompt comes from the state; turn 3's line and reply are evaluated again, with turn 4's line.
    expect(after.stats.restoredPromptTokens).toBeGreaterThanOrEqual(steps[1]!.reply.stats.promptTokens);
    expect(after.stats.evaluatedPromptTokens).toBeGreaterThan(steps[3]!.reply.stats.evaluatedPromptTokens);
  });

  it("without it, the same kill loses the channel's state: the whole window is evaluated (the control)", async () => {
    const steps = await script(backend({ sequences: 2 }), ["A"], 4);
    const stateDir = freshStateDir();
    const first = backend({ sequences: 2, stateDir });
    for (const step of steps.slice(0, 3)) await say(first, "A", step.window);
    await first.close();
    const next = backend({ sequences: 2, stateDir });
    const after = await say(next, "A", steps[3]!.window);
    expect(after.text).toBe(steps[3]!.reply.text);
    expect(after.stats.restoredPromptTokens).toBe(0);
    expect(after.stats.evaluatedPromptTokens).toBe(after.stats.promptTokens);
  });

  it("a reply its reader ended early counts as a turn (the engine stops reading at another speaker's line); an aborted one does not", async () => {
    const stateDir = freshStateDir();
    const b = backend({ sequences: 2, stateDir, stateSaveTurns: 1 });
    const aborted = new AbortController();
    const cut = b.generate(request("A", [turn("Alice", LINES[0]!)], { maxTokens: REPLY_TOKENS, signal: aborted.signal }));
    await cut.next();
    aborted.abort();
    await cut.next().catch(() => undefined);
    await new Promise((r) => setTimeout(r, 300));
    expect(b.describe().savedStates?.files).toBe(0);
    const read = b.generate(request("B", [turn("Bob", LINES[1]!)], { maxTokens: REPLY_TOKENS }));
    await read.next();
    await read.return(undefined as never);
    await untilSaved(b, 1);
  });

  it("a /reset while the periodic save is pending or running leaves no state behind", async () => {
    const steps = await script(backend({ sequences: 2 }), ["A"], 2);
    const stateDir = freshStateDir();
    const b = backend({ sequences: 2, stateDir, stateSaveTurns: 1 });
    await say(b, "A", steps[0]!.window);
    await b.resetChannel("A");
    await new Promise((r) => setTimeout(r, 300));
    expect(b.describe().savedStates?.files).toBe(0);
    const again = await say(b, "A", steps[1]!.window);
    expect(again.stats.restoredPromptTokens).toBe(0);
    expect(again.stats.evaluatedPromptTokens).toBe(again.stats.promptTokens);
    expect(again.text).toBe(steps[1]!.reply.text);
  });

  it("is refused outside its range", () => {
    expect(() => backend({ stateSaveTurns: -1 })).toThrow(/stateSaveTurns/);
    expect(() => backend({ stateSaveTurns: 1.5 })).toThrow(/stateSaveTurns/);
  });
});

describe("a state is loaded only under the key it was saved with", () => {
  const base = { sequences: 1, contextSize: 512 } satisfies Partial<LocalBackendOptions>;
  it.each([
    ["another model of the same layout and size", { ...base, loraPath: files.adapter }, { ...base, modelPath: files.otherModel, loraPath: files.adapter }],
    ["another adapter", { ...base, loraPath: files.adapter }, { ...base, loraPath: files.otherAdapter }],
    ["no adapter", { ...base, loraPath: files.adapter }, { ...base }],
    ["another adapter scale", { ...base, loraPath: files.adapter }, { ...base, loraPath: files.adapter, loraScale: 0.5 }],
    ["another context size", { ...base }, { ...base, contextSize: 1024 }],
    ["another KV cache type", { ...base }, { ...base, kvCacheType: "q8_0" }],
  ] as const)("%s: the prompt is evaluated, and the reply is that backend's own", async (_name, saved, loading) => {
    const stateDir = freshStateDir();
    const turns = [turn("Alice", LINES[0]!), turn(persona.name, "hm"), turn("Alice", LINES[1]!)];
    const first = backend({ ...saved, stateDir });
    await say(first, "c1", turns);
    await first.saveState(Date.now() + 30_000);
    await first.close();

    const second = backend({ ...loading, stateDir });
    const out = await say(second, "c1", turns);
    expect(out.stats.restoredPromptTokens).toBe(0);
    expect(out.stats.evaluatedPromptTokens).toBe(out.stats.promptTokens);
    const own = await say(backend({ ...loading }), "c1", turns);
    expect(out.text).toBe(own.text);
  });

  it("under the same key it is loaded (the control for the table above)", async () => {
    const stateDir = freshStateDir();
    const turns = [turn("Alice", LINES[0]!), turn(persona.name, "hm"), turn("Alice", LINES[1]!)];
    const first = backend({ sequences: 1, loraPath: files.adapter, stateDir });
    const before = await say(first, "c1", turns);
    await first.saveState(Date.now() + 30_000);
    await first.close();
    const out = await say(backend({ sequences: 1, loraPath: files.adapter, stateDir }), "c1", turns);
    expect(out.stats.evaluatedPromptTokens).toBe(1);
    expect(out.text).toBe(before.text);
  });
});

describe("damaged or foreign state files", () => {
  async function savedChannel(stateDir: string, turns: Turn[]): Promise<{ text: string; state: string; record: string }> {
    const b = backend({ sequences: 1, stateDir });
    const out = await say(b, "c1", turns);
    await b.saveState(Date.now() + 30_000);
    await b.close();
    const keyDir = join(stateDir, readdirSync(stateDir)[0]!);
    const record = join(keyDir, readdirSync(keyDir).find((f) => f.endsWith(".json"))!);
    return { text: out.text, state: record.replace(/\.json$/, ".state"), record };
  }
  const turns = [turn("Alice", LINES[2]!), turn(persona.name, "hm"), turn("Alice", LINES[3]!)];

  it("a truncated state is not loaded: the prompt is evaluated, the reply is the same, the file is gone", async () => {
    const stateDir = freshStateDir();
    const saved = await savedChannel(stateDir, turns);
    truncateSync(saved.state, 100);
    const out = await say(backend({ sequences: 1, stateDir }), "c1", turns);
    expect(out.stats.evaluatedPromptTokens).toBe(out.stats.promptTokens);
    expect(out.text).toBe(saved.text);
    expect(readdirSync(join(stateDir, readdirSync(stateDir)[0]!)).filter((f) => f.startsWith(saved.state.split("/").pop()!.slice(0, 8)))).toEqual([]);
  });

  it("a state llama.cpp refuses (its record vouches for it) is evaluated instead; llama.cpp's error is logged, not kept", async () => {
    const stateDir = freshStateDir();
    const saved = await savedChannel(stateDir, turns);
    const garbage = Buffer.from("not a llama.cpp sequence state at all");
    writeFileSync(saved.state, garbage);
    const record = JSON.parse(readFileSync(saved.record, "utf8")) as Record<string, unknown>;
    writeFileSync(saved.record, JSON.stringify({ ...record, bytes: garbage.length, sha256: createHash("sha256").update(garbage).digest("hex") }));
    const { logger, lines } = capturingLogger();
    const out = await say(backend({ sequences: 1, stateDir, logger }), "c1", turns);
    expect(out.stats.evaluatedPromptTokens).toBe(out.stats.promptTokens);
    expect(out.text).toBe(saved.text);
    expect(lines.some((l) => l.msg === "could not load a channel's saved state; evaluating instead")).toBe(true);
  });
});

describe("what was removed stays removed", () => {
  it("/reset deletes the channel's saved state; the next prompt is evaluated from scratch", async () => {
    const stateDir = freshStateDir();
    const b = backend({ sequences: 1, stateDir });
    const secret = [turn("Alice", "my password is swordfish"), turn(persona.name, "hm"), turn("Alice", LINES[0]!)];
    await say(b, "c1", secret);
    await say(b, "c2", [turn("Bob", LINES[1]!)]); // takes the sequence: c1's state is saved
    expect(b.describe().savedStates?.files).toBe(1);
    await b.resetChannel("c1");
    expect(b.describe().savedStates?.files).toBe(0);
    const after = [turn("Alice", LINES[0]!)];
    const out = await say(b, "c1", after);
    expect(out.stats.restoredPromptTokens).toBe(0);
    expect(out.text).toBe((await say(backend({ sequences: 1 }), "c1", after)).text);
  });

  it("/reset before the model is loaded (after a restart) deletes the saved state on disk too", async () => {
    const stateDir = freshStateDir();
    const b = backend({ sequences: 1, stateDir });
    await say(b, "c1", [turn("Alice", "my password is swordfish")]);
    await b.saveState(Date.now() + 30_000);
    await b.close();
    const restarted = backend({ sequences: 1, stateDir });
    await restarted.resetChannel("c1");
    expect(readdirSync(join(stateDir, readdirSync(stateDir)[0]!))).toEqual([]);
  });

  it("/reset also deletes the channel's states saved under another key (another context size): none of its words stay on disk", async () => {
    const stateDir = freshStateDir();
    const before = backend({ sequences: 1, stateDir, contextSize: 512 });
    await say(before, "c1", [turn("Alice", "my password is swordfish")]);
    await say(before, "c2", [turn("Bob", LINES[1]!)]);
    await before.saveState(Date.now() + 30_000);
    await before.close();
    // Restarted with another context size: another key, so those states are not this backend's to load.
    const after = backend({ sequences: 1, stateDir, contextSize: 640 });
    await say(after, "c3", [turn("Carol", LINES[2]!)]);
    const files = () => readdirSync(stateDir).flatMap((key) => readdirSync(join(stateDir, key)).map((f) => `${key}/${f}`));
    expect(files().filter((f) => f.endsWith(".state"))).toHaveLength(2); // c1 and c2 under the old key; c3 is in memory
    await after.resetChannel("c1");
    expect(files().filter((f) => f.endsWith(".state"))).toHaveLength(1);
    await after.saveState(Date.now() + 30_000);
    await after.resetChannel("c2");
    await after.resetChannel("c3");
    expect(files()).toEqual([]);
    expect(after.describe().savedStates).toMatchObject({ files: 0, bytes: 0 });
  });

  it("a message removed from the middle of the window: the saved state serves only what precedes it, and the reply is as if it had never been said", async () => {
    const stateDir = freshStateDir();
    const b = backend({ sequences: 1, stateDir });
    const first = turn("Alice", LINES[0]!);
    const removed = turn("Alice", "my password is swordfish");
    const window = [first, turn(persona.name, "hm"), removed, turn(persona.name, "ok"), turn("Alice", LINES[1]!)];
    await say(b, "c1", window);
    await say(b, "c2", [turn("Bob", LINES[2]!)]); // c1's state is saved
    const without = window.filter((t) => t !== removed);
    const out = await say(b, "c1", without);
    const fresh = await say(backend({ sequences: 1 }), "c1", without);
    expect(out.text).toBe(fresh.text);
    expect(out.stats.evaluatedPromptTokens).toBeLessThan(fresh.stats.evaluatedPromptTokens);
    expect(out.stats.promptTokens).toBe(fresh.stats.promptTokens);
  });
});

describe("dispose", () => {
  it("a closed backend never loads again", async () => {
    const b = backend();
    await b.prepare();
    await b.close();
    await expect(b.prepare()).rejects.toMatchObject({ kind: "aborted" });
    await expect(say(b, "c1", [turn("Alice", "hi")])).rejects.toMatchObject({ kind: "aborted" });
    expect(b.describe().loaded).toBe(false);
  });

  it("frees the model only after llama.cpp is done with every sequence: a scoring and a save in flight finish first", async () => {
    const stateDir = freshStateDir();
    const b = backend({ sequences: 2, stateDir });
    const window = [turn("Alice", LINES[0]!), turn(persona.name, "hm"), turn("Alice", LINES[1]!)];
    await say(b, "A", window);
    const reply = Array.from({ length: 12 }, (_, i) => LINES[i % LINES.length]).join(" ");
    const reference = await b.scoreReply(request("B", window), reply);
    // Both begin, then the backend closes under them.
    const scoring = b.scoreReply(request("B", window), reply);
    const saving = b.saveState(Date.now() + 30_000);
    await new Promise((r) => setImmediate(r));
    const closed = b.close();
    expect(await scoring).toEqual(reference);
    await saving;
    await closed;
    // The state written while closing is whole: a new backend restores it and evaluates only what is new.
    const next = backend({ sequences: 2, stateDir });
    const after = await say(next, "A", [...window, turn(persona.name, "hm"), turn("Alice", LINES[2]!)]);
    expect(after.stats.restoredPromptTokens).toBeGreaterThan(0);
  });

  it("llama.cpp's error lines are held only while a load step runs, never after a successful load", async () => {
    const loader = new LocalModelLoader({
      modelSource: parseModelSource(files.model),
      loraSource: undefined,
      loraScale: 1,
      threads: TEST_THREADS,
      gpuLayers: 0,
      contextSize: 512,
      sequences: 1,
      kvCacheType: "f16",
      loadTimeoutMs: 60_000,
      modelsDir: dir,
      adaptersDir: dir,
      downloadStallMs: 60_000,
      downloadTimeoutMs: 3_600_000,
      progressBar: undefined,
      build: TEST_BUILD,
      log: pino({ enabled: false }),
    });
    try {
      const loaded = await loader.load();
      // Makes llama.cpp log an error after the load: a file that is no sequence state.
      const bogus = join(dir, "bogus.state");
      writeFileSync(bogus, "not a state");
      await expect(loaded.sequences[0]!.loadStateFromFile(bogus, { acceptRisk: true })).rejects.toThrow();
      await new Promise((r) => setImmediate(r));
      expect(loader.heldErrorLines).toBe(0);
    } finally {
      await loader.close();
    }
  });
});
