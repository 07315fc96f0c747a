/**
 * LockstepDecoder against real llama.cpp (the tiny script model): node-llama-cpp reports each
 * batch it decodes to the context's prioritization strategy, which these tests record.
 */
import { rmSync } from "node:fs";
import type { BatchItem, LlamaContext, LlamaModel, Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LockstepDecoder, type DecodeJob } from "../../src/backends/local/lockstep.ts";
import { llamaRuntime } from "../../src/backends/local/runtime.ts";
import { writeTinyModelSet, type TinyModelSet } from "../gguf/tiny-models.ts";
import { TEST_BUILD, TEST_THREADS } from "./helpers.ts";

let files: TinyModelSet;
let model: LlamaModel;

beforeAll(async () => {
  files = writeTinyModelSet();
  const llama = await llamaRuntime({ gpu: false, threads: TEST_THREADS, build: TEST_BUILD });
  model = await llama.loadModel({ modelPath: files.model, gpuLayers: 0 });
});

afterAll(async () => {
  await model?.dispose();
  rmSync(files.dir, { recursive: true, force: true });
});

/** A context whose every decode is recorded as the number of sequences in it. */
async function recordingContext(sequences: number): Promise<{ context: LlamaContext; batches: number[] }> {
  const batches: number[] = [];
  const context = await model.createContext({
    contextSize: 256,
    sequences,
    threads: TEST_THREADS,
    batching: {
      itemPrioritizationStrategy: ({ items }: { items: readonly BatchItem[] }) => {
        batches.push(items.length);
        return items.map((item) => ({ item, processAmount: item.tokens.length }));
      },
    },
  });
  return { context, batches };
}

/** A job that takes `count` tokens of `sequence`'s continuation of a short prompt. */
function job(context: LlamaContext, count: number, signal = new AbortController().signal): { job: DecodeJob; tokens: Token[] } {
  const tokens: Token[] = [];
  const sequence = context.getSequence();
  return {
    tokens,
    job: {
      tokens: sequence.evaluate([model.tokens.bos!, ...model.tokenize("Alice: hi\nFriend:")], { temperature: 0 }),
      accept: (token) => tokens.push(token) < count,
      signal,
    },
  };
}

describe("LockstepDecoder", () => {
  it("puts every active sequence's next token into the same decode", async () => {
    const { context, batches } = await recordingContext(4);
    const decoder = new LockstepDecoder();
    const jobs = Array.from({ length: 4 }, () => job(context, 24));
    const ends = await Promise.all(jobs.map((j) => decoder.run(j.job)));
    expect(ends).toEqual(["stopped", "stopped", "stopped", "stopped"]);
    // 24 tokens each: the prompts and first tokens in one decode, then one decode per further token.
    expect(batches).toEqual(new Array(24).fill(4));
    for (const j of jobs) expect(model.detokenize(j.tokens)).toBe(model.detokenize(jobs[0]!.tokens));
    await context.dispose();
  });

  it("a job that joins later shares the next decode; one that ends leaves the rest running", async () => {
    const { context, batches } = await recordingContext(3);
    const decoder = new LockstepDecoder();
    const long = job(context, 20);
    const short = job(context, 6);
    const running = [decoder.run(long.job), decoder.run(short.job)];
    // Join once the first two are a few tokens in; the step in flight then is step `seen` (0-based).
    while (long.tokens.length < 3) await new Promise((resolve) => setImmediate(resolve));
    const seen = long.tokens.length;
    const late = job(context, 5);
    running.push(decoder.run(late.job));
    expect(await Promise.all(running)).toEqual(["stopped", "stopped", "stopped"]);
    // One decode per step, each with every job active in it: `long` in all 20, `short` in the first 6, `late` in 5 from the next step on.
    const expected = Array.from({ length: 20 }, (_, step) => 1 + (step < 6 ? 1 : 0) + (step > seen && step <= seen + 5 ? 1 : 0));
    expect(batches).toEqual(expected);
    await context.dispose();
  });

  it("an aborted job ends at the next step with 'aborted'; the others go on", async () => {
    const { context } = await recordingContext(2);
    const decoder = new LockstepDecoder();
    const controller = new AbortController();
    const stays = job(context, 12);
    const leaves = job(context, 1000, controller.signal);
    const runs = [decoder.run(stays.job), decoder.run(leaves.job)];
    while (leaves.tokens.length < 2) await new Promise((resolve) => setImmediate(resolve));
    controller.abort();
    expect(await Promise.all(runs)).toEqual(["stopped", "aborted"]);
    expect(stays.tokens).toHaveLength(12);
    expect(leaves.tokens.length).toBeLessThanOrEqual(4);
    await context.dispose();
  });

  it("a throwing accept fails only its own job", async () => {
    const { context } = await recordingContext(2);
    const decoder = new LockstepDecoder();
    const fine = job(context, 8);
    const broken = job(context, 8);
    broken.job.accept = () => {
      throw new Error("reader broke");
    };
    const [a, b] = await Promise.allSettled([decoder.run(fine.job), decoder.run(broken.job)]);
    expect(a).toEqual({ status: "fulfilled", value: "stopped" });
    expect(b).toMatchObject({ status: "rejected", reason: { message: "reader broke" } });
    expect(fine.tokens).toHaveLength(8);
    await context.dispose();
  });
});
