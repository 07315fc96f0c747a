/**
 * The test GGUF writer's Q8_0 blocks: the quantizer against ggml's reference rule, and a small
 * random model written both as F16 and as Q8_0 that llama.cpp loads and continues identically.
 */
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { readGgufFileInfo, type Llama, type LlamaContextSequence, type LlamaModel, type Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { llamaRuntime } from "../../src/backends/local/runtime.ts";
import { writeSyntheticLlama, type LlamaShape } from "../gguf/synthetic-llama.ts";
import { writeTinyScriptModel } from "../gguf/tiny-models.ts";
import { f16Bits, GgufWriter, Q8_0_BLOCK, toQ8_0Bytes } from "../../src/gguf/writer.ts";
import { TEST_BUILD, TEST_THREADS } from "./helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "friend-q8-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Decodes one block back to floats (the f16 scale read exactly, as ggml does). */
function dequantize(block: Uint8Array): Float32Array {
  const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const d = f16Value(view.getUint16(0, true));
  return Float32Array.from({ length: Q8_0_BLOCK }, (_, i) => view.getInt8(2 + i) * d);
}

function f16Value(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

describe("toQ8_0Bytes", () => {
  it.each([
    ["zeros", new Float32Array(32), 0, new Array(32).fill(0)],
    ["the largest value maps to ±127", Float32Array.from({ length: 32 }, (_, i) => (i === 3 ? -2.54 : 0)), f16Bits(0.02), [0, 0, 0, -127, ...new Array(28).fill(0)]],
    // A scale below half of f16's smallest subnormal rounds to zero: the block reads back as zeros.
    ["a block too small for an f16 scale", Float32Array.from({ length: 32 }, (_, i) => (i === 27 ? 1.004937925800463e-30 : 0)), 0, [...new Array(27).fill(0), 127, 0, 0, 0, 0]],
    ["halves round away from zero", Float32Array.from({ length: 32 }, (_, i) => [127, 0.5, -0.5, 1.5, -1.5][i] ?? 0), f16Bits(1), [127, 1, -1, 2, -2, ...new Array(27).fill(0)]],
  ])("%s", (_name, values, scaleBits, quants) => {
    const bytes = toQ8_0Bytes(values);
    expect(bytes.length).toBe(34);
    const view = new DataView(bytes.buffer);
    expect(view.getUint16(0, true)).toBe(scaleBits);
    expect(Array.from({ length: 32 }, (_, i) => view.getInt8(2 + i))).toEqual(quants);
  });

  it("every value comes back within half a step (plus the f16 scale's rounding), for any block", () => {
    const block = fc.float32Array({ minLength: 32, maxLength: 32, noNaN: true, noDefaultInfinity: true, min: -1e4, max: 1e4 });
    fc.assert(
      fc.property(block, (values) => {
        const back = dequantize(toQ8_0Bytes(values));
        const amax = Math.max(...values.map(Math.abs));
        const step = amax / 127;
        // The f16 scale is off by at most 2^-11 of itself, or by half its smallest subnormal step
        // (2^-25) below f16's normal range, and that error is multiplied by up to 127.
        const scaleError = Math.max(amax * 2 ** -10, 127 * 2 ** -25);
        for (let i = 0; i < 32; i++) expect(Math.abs(back[i]! - values[i]!)).toBeLessThanOrEqual(step / 2 + scaleError);
      }),
    );
  });

  it("the writer refuses a Q8_0 row that is not whole blocks", () => {
    expect(() => new GgufWriter().tensor("x", [48, 2], "q8_0", new Float32Array(96))).toThrow(/multiple of 32/);
  });
});

describe("Q8_0 models from the writer in llama.cpp", () => {
  // Small enough to write and run in milliseconds, random enough that every matrix matters.
  const shape: LlamaShape = { embedding: 128, feedForward: 256, layers: 2, heads: 4, kvHeads: 2, vocab: 1024, contextLength: 512 };
  const randomF16 = join(dir, "random-f16.gguf");
  const randomQ8 = join(dir, "random-q8_0.gguf");
  const scripts = { f32: join(dir, "script-f32.gguf"), f16: join(dir, "script-f16.gguf"), q8_0: join(dir, "script-q8_0.gguf") };
  let llama: Llama;

  beforeAll(async () => {
    writeSyntheticLlama(randomF16, shape, "f16");
    writeSyntheticLlama(randomQ8, shape, "q8_0");
    for (const [weights, path] of Object.entries(scripts)) writeTinyScriptModel(path, { weights: weights as keyof typeof scripts });
    llama = await llamaRuntime({ gpu: false, threads: TEST_THREADS, build: TEST_BUILD });
  });

  async function withSequence<T>(path: string, use: (sequence: LlamaContextSequence, model: LlamaModel) => Promise<T>): Promise<T> {
    const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
    const context = await model.createContext({ contextSize: 256, threads: TEST_THREADS });
    try {
      return await use(context.getSequence(), model);
    } finally {
      await context.dispose();
      await model.dispose();
    }
  }

  /** The first 16 greedy tokens after `Friend:`, as text. */
  const script = (path: string) =>
    withSequence(path, async (sequence, model) => {
      const tokens: Token[] = [];
      for await (const token of sequence.evaluate([model.tokens.bos!, ...model.tokenize("Alice: hi\nFriend:")], { temperature: 0 })) {
        tokens.push(token);
        if (tokens.length === 16) break;
      }
      return model.detokenize(tokens);
    });

  /** The next-token distribution after a fixed prompt. */
  const distribution = (path: string) =>
    withSequence(path, async (sequence, model) => {
      const prompt = [model.tokens.bos!, ...model.tokenize("the quick brown fox jumps over")];
      const last = prompt.length - 1;
      const out = await sequence.controlledEvaluate(prompt.map((t, i) => (i === last ? ([t, { generateNext: { probabilities: true } }] as const) : t)));
      return out[last]!.next!.probabilities!;
    });

  it("is a Q8_0 file: the matrices are type 8 at 34 bytes a block, the norms stay F32", async () => {
    const info = await readGgufFileInfo(randomQ8, { readTensorInfo: true });
    const types = new Map(info.fullTensorInfo!.map((t) => [t.name, t.ggmlType]));
    expect(types.get("blk.0.attn_q.weight")).toBe(8);
    expect(types.get("token_embd.weight")).toBe(8);
    expect(types.get("blk.0.attn_norm.weight")).toBe(0);
    // Matrices shrink from 2 bytes an element to 34/32.
    const ratio = statSync(randomQ8).size / statSync(randomF16).size;
    expect(ratio).toBeGreaterThan(0.5);
    expect(ratio).toBeLessThan(0.6);
  });

  it("the script model gives the same greedy tokens in F32, F16 and Q8_0", async () => {
    const [f32, f16, q8] = [await script(scripts.f32), await script(scripts.f16), await script(scripts.q8_0)];
    expect(f32).toMatch(/^Oh, I don't know\.\nRoss: \(entering\) Hey Ben/);
    expect(f16).toBe(f32);
    expect(q8).toBe(f32);
  });

  it("a random model's next-token distribution survives Q8_0: the F16 favourites keep their probabilities", async () => {
    // Random weights give a flat distribution whose near-ties Q8_0 may reorder, so compare probabilities, not the argmax.
    const [f16, q8] = [await distribution(randomF16), await distribution(randomQ8)];
    const favourites = [...f16.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5);
    for (const [token, p] of favourites) expect(Math.abs(q8.get(token)! - p) / p).toBeLessThan(0.1);
  });
});
