/**
 * LocalBackend against real llama.cpp inference on the generated tiny script model
 * (test/gguf/tiny-models.ts): after `Friend:` it says ` Oh, I don't know.\nRoss: (entering) Hey Ben!`
 * and keeps inventing Ross lines; its adapter turns `Hey Ben` into `Hey Rachel`.
 */
import { rmSync } from "node:fs";
import type { LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BackendError } from "../../src/core/backend.ts";
import { LocalBackend, type LocalBackendOptions } from "../../src/backends/local.ts";
import { llamaRuntime } from "../../src/backends/local/runtime.ts";
import { renderScript } from "../../src/backends/prompt.ts";
import { recentSpeakers } from "../../src/core/speakers.ts";
import { cleanReply, ReplyCleaner, streamingView } from "../../src/reply/clean.ts";
import { stopSequences } from "../../src/reply/speakers.ts";
import { TINY_REPLY, writeTinyModelSet, type TinyModelSet } from "../gguf/tiny-models.ts";
import { capturingLogger, cast, collect, persona, request, TEST_BUILD, TEST_THREADS, turn } from "./helpers.ts";

let files: TinyModelSet;
let tokenizer: LlamaModel;
const backends: LocalBackend[] = [];

function backend(options: Partial<LocalBackendOptions> = {}): LocalBackend {
  const b = new LocalBackend({ modelPath: files.model, threads: TEST_THREADS, build: TEST_BUILD, gpuLayers: 0, contextSize: 512, sequences: 2, ...options });
  backends.push(b);
  return b;
}

const stopFor = (turns: ReturnType<typeof turn>[]) => stopSequences(persona.name, recentSpeakers(turns), cast, 4);
const clean = (raw: string, turns: ReturnType<typeof turn>[]) => cleanReply(raw, { personaName: persona.name, windowNames: recentSpeakers(turns), cast });

beforeAll(async () => {
  files = writeTinyModelSet();
  // An independent tokenizer (vocab only) for the expected token counts.
  const llama = await llamaRuntime({ gpu: false, threads: TEST_THREADS, build: TEST_BUILD });
  tokenizer = await llama.loadModel({ modelPath: files.model, vocabOnly: true });
});

afterAll(async () => {
  for (const b of backends) await b.close();
  await tokenizer?.dispose();
  rmSync(files.dir, { recursive: true, force: true });
});

describe("the designed hallucination", () => {
  it("stops at the \\nRoss: trigger and cleans to exactly the reply", async () => {
    const turns = [turn("Alice", "hello there")];
    const stop = stopFor(turns);
    expect(stop).toContain("\nRoss:");
    const out = await collect(backend().generate(request("c1", turns, { stop })));
    expect(out.stats.stopReason).toBe("stop");
    expect(out.text).toBe(TINY_REPLY);
    expect(clean(out.text, turns)).toBe("Oh, I don't know.");
    // Streaming never showed a shown prefix that the final reply takes back.
    let raw = "";
    for (const chunk of out.chunks) {
      raw += chunk;
      expect(TINY_REPLY.startsWith(streamingView(raw, { personaName: persona.name, cast }).text)).toBe(true);
    }
  });

  it("a speaker in no stop list: the caller's cleaner ends the stream with return(), and decoding stops at once", async () => {
    const { logger, lines } = capturingLogger();
    const b = backend({ modelPath: files.guntherModel, logger });
    const turns = [turn("Alice", "hello there")];
    const stop = stopFor(turns);
    expect(stop.join()).not.toContain("Gunther");
    // What the conversation engine does: clean the raw stream, and stop reading once the cleaner is done.
    const cleaner = new ReplyCleaner({ personaName: persona.name, windowNames: recentSpeakers(turns), cast });
    let raw = "";
    for await (const chunk of b.generate(request("c1", turns, { stop, maxTokens: 40 }))) {
      raw += chunk;
      if (cleaner.push(chunk).done) break;
    }
    // ` Oh , ▁I ▁don't ▁know . \n Gunther: ▁(`: the cleaner is sure at the 9th token.
    expect(raw).toBe("Oh, I don't know.\nGunther: (");
    expect(clean(raw, turns)).toBe("Oh, I don't know.");
    // The backend streams raw text only: it kept no cleaner of its own, and stopped within a step of the reader.
    const ended = lines.find((l) => l.msg === "local generation ended by its reader");
    expect(ended?.completionTokens).toBeGreaterThanOrEqual(9);
    expect(ended?.completionTokens).toBeLessThanOrEqual(10);
    // The channel's next turn reuses the cache up to where the stream was cut.
    const next = [...turns, turn(persona.name, "Oh, I don't know."), turn("Alice", "why not?")];
    const again = await collect(b.generate(request("c1", next, { stop: stopFor(next), maxTokens: 4 })));
    expect(again.stats.evaluatedPromptTokens).toBeLessThan(20);
  });
});

describe("the LoRA adapter", () => {
  // With persona "Ross" the prompt ends in `Ross:`, so the model's own line is ` (entering) Hey Ben!`
  // and the adapter's transition is inside the reply rather than cut away with a follow-on speaker.
  const ross = { ...persona, name: "Ross" };
  const turns = [turn("Alice", "who is there?")];
  // 8 tokens: ` (` `entering` `)` ` Hey` ` Ben` `!` `\n` `Ross:`.
  const ask = (b: LocalBackend) => collect(b.generate(request("c1", turns, { persona: ross, maxTokens: 8 })));

  it("is applied: the designed transition changes, and nothing else", async () => {
    const base = await ask(backend());
    const tuned = await ask(backend({ loraPath: files.adapter }));
    expect(base.text).toBe("(entering) Hey Ben!\nRoss:");
    expect(tuned.text).toBe("(entering) Hey Rachel!\nRoss:");
    expect(tuned.stats.stopReason).toBe("maxTokens");
  });

  it("at scale 0 equals the base model, and output is deterministic", async () => {
    const base = await ask(backend());
    const zero = await ask(backend({ loraPath: files.adapter, loraScale: 0 }));
    expect(zero.text).toBe(base.text);
    const again = backend({ loraPath: files.adapter });
    expect((await ask(again)).text).toBe((await ask(again)).text);
  });

  it("describe() names the files and says whether they are loaded", async () => {
    const b = backend({ loraPath: files.adapter });
    expect(b.describe()).toEqual({ backend: "local", model: "tiny-script.gguf", adapter: "tiny-lora.gguf", loaded: false });
    await Promise.all([b.prepare(), b.prepare()]);
    expect(b.describe().loaded).toBe(true);
    // Which llama.cpp binary runs, for /status: the one this suite was asked to test (LLAMA_BUILD).
    expect(b.describe().binary).toMatch(TEST_BUILD === "native" ? /^native build \(cpu, GGML_NATIVE=ON/ : /^prebuilt \(cpu\)$/);
    expect(backend().describe().adapter).toBeUndefined();
  });
});

describe("KV cache reuse", () => {
  it("a second turn evaluates only the new tokens", async () => {
    const b = backend();
    const first = [turn("Alice", "hello there")];
    const one = await collect(b.generate(request("c1", first, { stop: stopFor(first) })));
    expect(one.stats.evaluatedPromptTokens).toBe(one.stats.promptTokens);

    const second = [...first, turn(persona.name, clean(one.text, first)), turn("Alice", "why not?")];
    const two = await collect(b.generate(request("c1", second, { stop: stopFor(second) })));
    expect(clean(two.text, second)).toBe("Oh, I don't know.");

    // The sequence holds BOS, prompt 1 and the reply up to its "\n" (the trigger's `Ross:` was sampled, never evaluated).
    const prompt1 = renderScript(persona, first);
    const held = 1 + tokenizer.tokenize(`${prompt1} ${TINY_REPLY}\n`).length;
    const prompt2 = tokenizer.tokenize(renderScript(persona, second));
    expect(prompt2.slice(0, held - 1)).toEqual(tokenizer.tokenize(`${prompt1} ${TINY_REPLY}\n`));
    expect(two.stats.promptTokens).toBe(1 + prompt2.length);
    expect(two.stats.evaluatedPromptTokens).toBe(two.stats.promptTokens - held);
    expect(two.stats.evaluatedPromptTokens).toBeLessThan(20); // `Alice: why not?\nFriend:`, mostly byte tokens
    expect(two.stats.promptTokens).toBeGreaterThan(250);
  });

  it("drops old turns in one large chunk when the context fills, then reuses the cache again", async () => {
    const short = { ...persona, systemPrompt: "Be Friend." };
    const b = backend({ contextSize: 256 });
    const maxTokens = 16;
    const budget = 256 - maxTokens - 2;
    let turns: ReturnType<typeof turn>[] = [];
    const log: Array<{ evaluated: number; prompt: number; dropped: number }> = [];
    for (let i = 0; i < 24; i++) {
      turns = [...turns, turn("Alice", `message ${i}`)];
      const out = await collect(b.generate(request("c1", turns, { persona: short, maxTokens, stop: stopFor(turns) })));
      expect(clean(out.text, turns)).toBe("Oh, I don't know.");
      log.push({ evaluated: out.stats.evaluatedPromptTokens, prompt: out.stats.promptTokens, dropped: out.stats.droppedTurns });
      turns = [...turns, turn(persona.name, clean(out.text, turns))];
    }
    for (const l of log) expect(l.prompt).toBeLessThanOrEqual(budget + 1);
    const trims = log.filter((l, i) => i > 0 && l.dropped !== log[i - 1]!.dropped);
    expect(trims.length).toBeGreaterThanOrEqual(1);
    // Each trim drops many turns at once and leaves the prompt at most half the budget.
    for (const t of trims) expect(t.prompt).toBeLessThanOrEqual(budget / 2 + 1);
    const droppedPerTrim = trims.map((t, i) => t.dropped - (i === 0 ? 0 : trims[i - 1]!.dropped));
    for (const n of droppedPerTrim) expect(n).toBeGreaterThanOrEqual(6);
    // Only the first turn and the trims evaluate (nearly) the whole prompt; every other turn only its new lines.
    expect(log[0]!.evaluated).toBe(log[0]!.prompt);
    for (const t of trims) expect(t.evaluated).toBeGreaterThan(60);
    for (const l of log.slice(1).filter((l) => !trims.includes(l))) expect(l.evaluated).toBeLessThan(30);
  });

  it("resetChannel forgets the channel's cache", async () => {
    const b = backend();
    const turns = [turn("Alice", "hello there")];
    await collect(b.generate(request("c1", turns, { stop: stopFor(turns) })));
    const cached = await collect(b.generate(request("c1", turns, { stop: stopFor(turns) })));
    expect(cached.stats.evaluatedPromptTokens).toBe(1);
    b.resetChannel("c1");
    const fresh = await collect(b.generate(request("c1", turns, { stop: stopFor(turns) })));
    expect(fresh.stats.evaluatedPromptTokens).toBe(fresh.stats.promptTokens);
  });
});

describe("channels and sequences", () => {
  it("two channels generate at once in their own sequences, and never share state", async () => {
    const b = backend({ sequences: 2 });
    const a1 = [turn("Alice", "hello there")];
    const b1 = [turn("Bob", "good morning")];
    const [outA, outB] = await Promise.all([
      collect(b.generate(request("A", a1, { stop: stopFor(a1) }))),
      collect(b.generate(request("B", b1, { stop: stopFor(b1) }))),
    ]);
    expect(clean(outA.text, a1)).toBe("Oh, I don't know.");
    expect(clean(outB.text, b1)).toBe("Oh, I don't know.");
    // B shares the preamble's wording with A, yet evaluated everything: nothing came from A's cache.
    expect(outB.stats.evaluatedPromptTokens).toBe(outB.stats.promptTokens);
    expect(outA.stats.evaluatedPromptTokens).toBe(outA.stats.promptTokens);

    // A's cache survived B's generation.
    const a2 = [...a1, turn(persona.name, "Oh, I don't know."), turn("Alice", "really?")];
    const again = await collect(b.generate(request("A", a2, { stop: stopFor(a2) })));
    expect(again.stats.evaluatedPromptTokens).toBeLessThan(20);
  });

  it("more channels than sequences: among equally costly sequences, the least recently used is cleared and reassigned", async () => {
    const b = backend({ sequences: 2 });
    // The same prompt in every channel: every sequence costs the same to rebuild, so age decides.
    const turns = [turn("Alice", "hi")];
    const same = async (channel: string) => (await collect(b.generate(request(channel, turns, { stop: stopFor(turns) })))).stats;

    await same("A"); // A → sequence 1
    await same("B"); // B → sequence 2
    const c = await same("C"); // C takes A's sequence, the least recently used
    expect(c.evaluatedPromptTokens).toBe(c.promptTokens);
    // C's cache is its own: repeating its prompt evaluates one token.
    expect((await same("C")).evaluatedPromptTokens).toBe(1);
    // A lost its sequence, and gets B's (now the least recently used) with a cleared cache.
    const a = await same("A");
    expect(a.evaluatedPromptTokens).toBe(a.promptTokens);
    // C was untouched by A's return.
    expect((await same("C")).evaluatedPromptTokens).toBe(1);
  });

  it("more channels than sequences: the sequence cheapest to rebuild goes first, even if used more recently", async () => {
    const b = backend({ sequences: 2 });
    const long = [turn("Alice", "hi"), turn(persona.name, "Oh, I don't know."), turn("Alice", "so what do you think about the new coffee place downtown?")];
    const short = [turn("Bob", "hi")];
    const run = async (channel: string, turns: ReturnType<typeof turn>[]) => (await collect(b.generate(request(channel, turns, { stop: stopFor(turns) })))).stats;

    await run("long", long); // least recently used, but many tokens to rebuild
    await run("short", short);
    await run("other", short); // takes the short channel's sequence
    expect((await run("long", long)).evaluatedPromptTokens).toBe(1);
    const back = await run("short", short);
    expect(back.evaluatedPromptTokens).toBe(back.promptTokens);
  });
});

describe("abort and limits", () => {
  // Persona "Ross" makes the model's own line repeat forever: only maxTokens or an abort ends it.
  const ross = { ...persona, name: "Ross" };
  const turns = [turn("Alice", "who is there?")];

  it("maxTokens caps the reply", async () => {
    const out = await collect(backend().generate(request("c1", turns, { persona: ross, maxTokens: 5 })));
    expect(out.stats).toMatchObject({ stopReason: "maxTokens", completionTokens: 5 });
  });

  it("an abort stops generation within a token or two, and the channel keeps working", async () => {
    const { logger, lines } = capturingLogger();
    const b = backend({ logger });
    const controller = new AbortController();
    const gen = b.generate(request("c1", turns, { persona: ross, maxTokens: 200, signal: controller.signal }));
    const first = await gen.next();
    expect(first.done).toBe(false);
    controller.abort();
    const error = await (async () => {
      try {
        while (!(await gen.next()).done);
      } catch (err) {
        return err;
      }
    })();
    expect(error).toBeInstanceOf(BackendError);
    expect((error as BackendError).kind).toBe("aborted");
    const aborted = lines.find((l) => l.msg === "local generation aborted");
    expect(aborted?.completionTokens).toBeLessThanOrEqual(3);

    const after = await collect(b.generate(request("c1", turns, { persona: ross, maxTokens: 6 })));
    expect(after.text).toBe("(entering) Hey Ben!");
    expect(after.stats.evaluatedPromptTokens).toBe(1);
  });

  it("an already aborted request fails at once without loading anything", async () => {
    const b = backend();
    const controller = new AbortController();
    controller.abort();
    await expect(collect(b.generate(request("c1", turns, { signal: controller.signal })))).rejects.toMatchObject({ kind: "aborted" });
    expect(b.describe().loaded).toBe(false);
  });

  it("a request waiting for a busy sequence gives up as soon as it is aborted", async () => {
    const b = backend({ sequences: 1 });
    const busy = b.generate(request("A", turns, { persona: ross, maxTokens: 30 }));
    await busy.next(); // A holds the only sequence; its reader is paused
    const controller = new AbortController();
    const waiting = collect(b.generate(request("B", turns, { signal: controller.signal })));
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ kind: "aborted" });
    expect((await collect(busy)).stats.stopReason).toBe("maxTokens");
  });

  it("a reader that stops early frees the channel's sequence", async () => {
    const b = backend({ sequences: 1 });
    for await (const chunk of b.generate(request("c1", turns, { persona: ross, maxTokens: 200 }))) {
      expect(chunk).toBe("(");
      break;
    }
    const out = await collect(b.generate(request("c2", turns, { persona: ross, maxTokens: 3 })));
    expect(out.stats.completionTokens).toBe(3);
  });

  it("close() ends a generation in flight", async () => {
    const b = backend();
    const gen = b.generate(request("c1", turns, { persona: ross, maxTokens: 200 }));
    await gen.next();
    const closed = b.close();
    await expect(collect(gen)).rejects.toMatchObject({ kind: "aborted" });
    await closed;
    expect(b.describe().loaded).toBe(false);
  });
});
