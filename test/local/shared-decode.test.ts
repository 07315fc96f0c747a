/**
 * Channels that share a decode each sample from their own sequence's logits.
 *
 * llama.cpp reorders a decode's output rows lazily, in the first call that reads them, without a
 * lock; node-llama-cpp starts every sequence's sampling at once on the thread pool, so two of them
 * could swap the same rows together and a sequence sampled another's logits (docs/EVAL.md's
 * off-script replies). `sampleFirstAloneAfterDecode` lets the first sampling run alone.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LlamaContext } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalBackend } from "../../src/backends/local.ts";
import { sampleFirstAloneAfterDecode } from "../../src/backends/local/sampling-order.ts";
import { writeTinyScriptModel } from "../gguf/tiny-models.ts";
import { request, TEST_BUILD, TEST_THREADS, turn } from "./helpers.ts";

describe("channels sharing a decode", () => {
  let dir: string;
  let modelPath: string;
  let backend: LocalBackend | undefined;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "friend-shared-decode-"));
    modelPath = join(dir, "tiny-script-32k.gguf");
    // A real model's vocabulary size: each logit row llama.cpp swaps is as long as in production,
    // which is what made two samplings swapping at once likely (about 1 reply in 3 here before the fix).
    writeTinyScriptModel(modelPath, { unusedTokens: 32_000, weights: "f16" });
  });

  afterAll(async () => {
    await backend?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("each sample their own sequence's next token, however they joined the decode", async () => {
    const sequences = 8;
    backend = new LocalBackend({ modelPath, threads: TEST_THREADS, build: TEST_BUILD, gpuLayers: 0, contextSize: 1024, sequences });
    const turns = [turn("Alice", "hello there")];
    const read = async (gen: AsyncGenerator<string, unknown, undefined>, text = ""): Promise<string> => {
      for await (const chunk of gen) text += chunk;
      return text;
    };
    // The script's greedy line, with no other channel about.
    const reference = await read(backend.generate(request("alone", turns, { maxTokens: 60 })));
    expect(reference.startsWith("Oh, I don't know.\nRoss: (entering) Hey Ben!\n")).toBe(true);
    await backend.resetChannel("alone");
    // Channel cI holds sequence I.
    for (let i = 0; i < sequences; i++) await read(backend.generate(request(`c${i}`, turns, { maxTokens: 1 })));

    // They join in an interleaved order (llama.cpp then splits each decode out of its order and
    // reorders the outputs), one token apart (so each sits at another place in the script).
    const order = [0, 4, 1, 5, 2, 6, 3, 7];
    const replies: string[] = [];
    for (let round = 0; round < 8; round++) {
      const running: Promise<string>[] = [];
      for (const i of order) {
        const gen = backend.generate(request(`c${i}`, turns, { maxTokens: 60, temperature: 0.8, seed: round * 100 + i }));
        const first = await gen.next();
        running.push(read(gen, first.done ? "" : first.value));
      }
      replies.push(...(await Promise.all(running)));
    }
    // Logits 48 against 0: at temperature 0.8 any other token has a probability below 1e-20.
    expect(replies.filter((reply) => reply !== reference)).toEqual([]);
  });
});

describe("sampleFirstAloneAfterDecode", () => {
  /** A stand-in for node-llama-cpp's native context: read-only methods on its prototype, as the addon's are. */
  function fakeContext() {
    const started: string[] = [];
    const pending = new Map<string, { resolve(v: number): void; reject(e: Error): void }>();
    const proto = {};
    Object.defineProperty(proto, "decodeBatch", { value: async () => undefined, writable: false });
    Object.defineProperty(proto, "sampleToken", {
      writable: false,
      value: (name: string) => {
        if (name === "throws") throw new Error("bad arguments");
        started.push(name);
        return new Promise<number>((resolve, reject) => pending.set(name, { resolve, reject }));
      },
    });
    const native = Object.create(proto) as { decodeBatch(): Promise<void>; sampleToken(name: string): Promise<number> };
    const context = { _ctx: native } as unknown as LlamaContext;
    return { context, native, started, pending };
  }
  const tick = () => new Promise((resolve) => setImmediate(resolve));

  it("runs the first sampling after a decode alone, then the others together", async () => {
    const { context, native, started, pending } = fakeContext();
    sampleFirstAloneAfterDecode(context);
    await native.decodeBatch();
    const a = native.sampleToken("a");
    const b = native.sampleToken("b");
    const c = native.sampleToken("c");
    await tick();
    expect(started).toEqual(["a"]);
    pending.get("a")!.resolve(1);
    await tick();
    expect(started).toEqual(["a", "b", "c"]);
    pending.get("b")!.resolve(2);
    pending.get("c")!.resolve(3);
    expect(await Promise.all([a, b, c])).toEqual([1, 2, 3]);
  });

  it("lets the others run when the first sampling fails, or throws before it starts", async () => {
    const { context, native, started, pending } = fakeContext();
    sampleFirstAloneAfterDecode(context);
    await native.decodeBatch();
    expect(() => native.sampleToken("throws")).toThrow("bad arguments");
    const a = native.sampleToken("a"); // the first one that started
    const b = native.sampleToken("b");
    await tick();
    expect(started).toEqual(["a"]);
    pending.get("a")!.reject(new Error("no logits"));
    await expect(a).rejects.toThrow("no logits");
    await tick();
    expect(started).toEqual(["a", "b"]);
    pending.get("b")!.resolve(2);
    expect(await b).toBe(2);
  });

  it("refuses a node-llama-cpp whose context does not have the methods it wraps", () => {
    expect(() => sampleFirstAloneAfterDecode({ _ctx: {} } as unknown as LlamaContext)).toThrow(/was node-llama-cpp upgraded/);
  });
});
