/**
 * Bad model and adapter files give a BackendError("load") that names the file and the reason
 * (llama.cpp's own reason for adapters, captured from its log), and a failed load never stops a
 * later good one.
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BackendError } from "../../src/core/backend.ts";
import { LocalBackend, type LocalBackendOptions } from "../../src/backends/local.ts";
import { RawGguf } from "../gguf/raw-gguf.ts";
import { writeTinyLoraAdapter, writeTinyModelSet, type TinyModelSet } from "../gguf/tiny-models.ts";
import { capturingLogger, collect, request, TEST_BUILD, TEST_THREADS, turn } from "./helpers.ts";

let files: TinyModelSet;
const backends: LocalBackend[] = [];

function backend(options: LocalBackendOptions): LocalBackend {
  const b = new LocalBackend({ threads: TEST_THREADS, build: TEST_BUILD, gpuLayers: 0, contextSize: 512, sequences: 1, ...options });
  backends.push(b);
  return b;
}

async function loadError(options: LocalBackendOptions): Promise<BackendError> {
  const b = backend(options);
  const error = await b.prepare().then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(BackendError);
  expect((error as BackendError).kind).toBe("load");
  expect(b.describe().loaded).toBe(false);
  return error as BackendError;
}

beforeAll(() => {
  files = writeTinyModelSet();
});

afterAll(async () => {
  for (const b of backends) await b.close();
  rmSync(files.dir, { recursive: true, force: true });
});

describe("load errors name the file and the reason", () => {
  it("a missing model file", async () => {
    const err = await loadError({ modelPath: files.missing });
    expect(err.message).toContain(files.missing);
    expect(err.message).toContain("does not exist");
    expect(err.message).toContain("LLAMA_MODEL_PATH");
  });

  it("a model file that is not GGUF", async () => {
    const err = await loadError({ modelPath: files.notGguf });
    expect(err.message).toContain(files.notGguf);
    expect(err.message).toContain("is not a GGUF file");
  });

  it("a directory given as the model", async () => {
    const err = await loadError({ modelPath: files.dir });
    expect(err.message).toContain(files.dir);
    expect(err.message).toMatch(/directory|not a file/);
  });

  it("a named pipe (FIFO) given as the model or the adapter is refused at once, never waited on for a writer", async () => {
    const fifo = join(files.dir, "model.fifo");
    execFileSync("mkfifo", [fifo]);
    const started = Date.now();
    const model = await loadError({ modelPath: fifo });
    expect(model.message).toContain(`The local model file ${fifo} is not a file.`);
    const adapter = await loadError({ modelPath: files.model, loraPath: fifo });
    expect(adapter.message).toContain(`The local LoRA adapter file ${fifo} is not a file.`);
    // A blocking open would wait for a writer for ever (and hold one of libuv's threads meanwhile).
    expect(Date.now() - started).toBeLessThan(20_000);
  }, 25_000);

  it("a missing or non-GGUF adapter", async () => {
    const missing = await loadError({ modelPath: files.model, loraPath: files.missing });
    expect(missing.message).toMatch(/local LoRA adapter file .* does not exist/);
    expect(missing.message).toContain("LLAMA_LORA_PATH");
    const notGguf = await loadError({ modelPath: files.model, loraPath: files.notGguf });
    expect(notGguf.message).toContain(`LoRA adapter file ${files.notGguf} is not a GGUF file`);
  });

  it.each([
    ["another architecture", "wrongArchitectureAdapter", "model arch and LoRA arch mismatch"],
    ["shapes of a wider model", "wrongShapeAdapter", "tensor 'output.weight' has incorrect shape"],
    ["a tensor the model lacks", "unknownTensorAdapter", "LoRA tensor 'blk.7.attn_q.weight' does not exist in base model"],
  ] as const)("an adapter for %s: llama.cpp's reason, not just 'Failed to initialize'", async (_, file, reason) => {
    const { logger, lines } = capturingLogger();
    const err = await loadError({ modelPath: files.model, loraPath: files[file], logger });
    expect(err.message.startsWith(`Cannot apply the LoRA adapter ${files[file]} to the model ${files.model}: ${reason}`)).toBe(true);
    // llama.cpp's line also reaches the log, and the failure is logged once.
    expect(lines.some((l) => String(l.llama).includes(reason))).toBe(true);
    expect(lines.filter((l) => l.msg === "local model failed to load")).toHaveLength(1);
  });
});

describe("recovery", () => {
  it("a failed load is retried on the next call, and succeeds once the file is fixed", async () => {
    const adapter = join(files.dir, "fixed-later.gguf");
    writeTinyLoraAdapter(adapter, { defect: "shape" });
    const b = backend({ modelPath: files.model, loraPath: adapter });
    const turns = [turn("Alice", "hi")];
    await expect(collect(b.generate(request("c1", turns)))).rejects.toMatchObject({ kind: "load" });
    await expect(b.prepare()).rejects.toThrow(/incorrect shape/);

    copyFileSync(files.adapter, adapter);
    const out = await collect(b.generate(request("c1", turns, { maxTokens: 4 })));
    expect(out.text).toBe("Oh, I don't");
    expect(b.describe().loaded).toBe(true);
  });

  it("concurrent callers share one load and one failure", async () => {
    const { logger, lines } = capturingLogger();
    const b = backend({ modelPath: files.model, loraPath: files.wrongShapeAdapter, logger });
    const results = await Promise.allSettled([b.prepare(), b.prepare(), b.prepare()]);
    expect(results.map((r) => r.status)).toEqual(["rejected", "rejected", "rejected"]);
    expect(lines.filter((l) => l.msg === "loading local model" && l.model)).toHaveLength(1);
  });

  it("other backends load and generate after failures in the same process", async () => {
    await loadError({ modelPath: files.notGguf });
    await loadError({ modelPath: files.model, loraPath: files.wrongArchitectureAdapter });
    const good = backend({ modelPath: files.model, loraPath: files.adapter });
    const turns = [turn("Alice", "hi")];
    const out = await collect(good.generate(request("c1", turns, { maxTokens: 6 })));
    expect(out.text).toBe("Oh, I don't know.");
  });
});

describe("hostile files and slow loads (issue 10)", () => {
  /** GGUF v3 claiming 2^48 tensors and 2^32 keys in 24 bytes: node-llama-cpp used to spin on it for minutes. */
  const hostileHeader = () => new RawGguf().header({ tensors: 2n ** 48n, keys: 2n ** 32n }).bytes();

  it("the issue's 24-byte header fails at once with the file and the reason, and a valid file at the same path then loads", async () => {
    const path = join(files.dir, "hostile.gguf");
    writeFileSync(path, hostileHeader());
    const b = backend({ modelPath: path });
    const turns = [turn("Alice", "hi")];
    await expect(collect(b.generate(request("c1", turns)))).rejects.toMatchObject({
      kind: "load",
      message: expect.stringMatching(new RegExp(`^The local model file ${path} is damaged or truncated: its header claims 281474976710656 tensors and 4294967296 metadata keys`)),
    });
    await expect(b.prepare()).rejects.toThrow(/far more than any model has/);

    copyFileSync(files.model, path);
    const out = await collect(b.generate(request("c1", turns, { maxTokens: 6 })));
    expect(out.text).toBe("Oh, I don't know.");
  });

  it("a load that outlasts the timeout fails naming the file and LLAMA_LOAD_TIMEOUT_S, and each later call starts a fresh load", async () => {
    const { logger, lines } = capturingLogger();
    // 1 ms: llama.cpp cannot load even the tiny model that fast, so every attempt times out.
    const slow = backend({ modelPath: files.model, loraPath: files.adapter, loadTimeoutMs: 1, logger });
    const timedOut = new RegExp(`^Loading the local model ${files.model} with the adapter ${files.adapter} took longer than 0.001 s, so it was stopped; .*LLAMA_LOAD_TIMEOUT_S`);
    await expect(slow.prepare()).rejects.toMatchObject({ kind: "load", message: expect.stringMatching(timedOut) });
    await expect(slow.prepare()).rejects.toThrow(timedOut);
    expect(lines.filter((l) => l.msg === "loading local model" && l.model)).toHaveLength(2);
    expect(slow.describe()).toMatchObject({ loaded: false });
    expect(slow.describe().progress).toBeUndefined();
    // Nothing was left holding llama.cpp: another backend loads and answers right away.
    const good = backend({ modelPath: files.model, loraPath: files.adapter });
    const out = await collect(good.generate(request("c1", [turn("Alice", "hi")], { maxTokens: 6 })));
    expect(out.text).toBe("Oh, I don't know.");
  });

  it("random truncations and header counts never hang a load: each is a clear error naming the file, or a model that loads (property)", async () => {
    const original = readFileSync(files.model);
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.record({ truncateTo: fc.integer({ min: 0, max: original.length - 1 }) }),
          fc.record({ at: fc.constantFrom(4, 8, 16), value: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
        ),
        async (damage) => {
          let bytes: Buffer;
          if ("truncateTo" in damage) bytes = original.subarray(0, damage.truncateTo);
          else {
            bytes = Buffer.from(original);
            if (damage.at === 4) bytes.writeUInt32LE(Number(damage.value % 2n ** 32n), 4);
            else bytes.writeBigUInt64LE(damage.value, damage.at);
          }
          const path = join(files.dir, `damaged-${run++}.gguf`);
          writeFileSync(path, bytes);
          const b = new LocalBackend({ modelPath: path, threads: TEST_THREADS, gpuLayers: 0, contextSize: 512, sequences: 1 });
          try {
            await b.prepare();
            // Only an unchanged file loads, or one that says GGUF version 2: llama.cpp reads v2, whose layout is v3's.
            expect(bytes.equals(original) || ("at" in damage && damage.at === 4 && damage.value % 2n ** 32n === 2n)).toBe(true);
          } catch (err) {
            expect(err).toBeInstanceOf(BackendError);
            expect((err as BackendError).kind).toBe("load");
            expect((err as BackendError).message).toContain(path);
          } finally {
            await b.close();
          }
        },
      ),
      { numRuns: 40 },
    );
  });
});

describe("options", () => {
  it.each([
    [{ threads: 0 }, /threads/],
    [{ sequences: 0 }, /sequences/],
    [{ contextSize: 10 }, /contextSize/],
    [{ gpuLayers: -1 }, /gpuLayers/],
    [{ loraScale: Number.NaN }, /loraScale/],
  ] as const)("%j is refused up front", (options, message) => {
    expect(() => new LocalBackend({ modelPath: files.model, ...options } as LocalBackendOptions)).toThrow(message);
  });
});
