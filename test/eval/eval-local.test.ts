/**
 * friend eval and the held-out perplexity on real llama.cpp inference with the tiny script model
 * (test/gguf/tiny-models.ts): after `Friend:` it always says ` Oh, I don't know.` and then invents a
 * `Ross:` line (a `Gunther:` line in its Gunther variant); its adapter makes ` Hey` go on as
 * ` Rachel` instead of ` Ben`, so it makes the true reply "Hey Rachel!" likelier.
 */
import { openSync, readFileSync, readSync, closeSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readGgufFileInfo, type LlamaModel, type Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli.ts";
import { LocalBackend } from "../../src/backends/local.ts";
import { llamaRuntime } from "../../src/backends/local/runtime.ts";
import { renderScript } from "../../src/backends/prompt.ts";
import type { EvalItem } from "../../src/data/eval-items.ts";
import type { Summary } from "../../src/eval/report.ts";
import { captureIo } from "../data/helpers/capture-io.ts";
import { tempFolder } from "../data/helpers/fixtures.ts";
import { writeTinyModelSet, type TinyModelSet } from "../gguf/tiny-models.ts";
import { persona, request, TEST_BUILD, TEST_THREADS, turn } from "../local/helpers.ts";

let files: TinyModelSet;
let tokenizer: LlamaModel;
const dir = tempFolder();

beforeAll(async () => {
  files = writeTinyModelSet(join(dir.path, "models"));
  const llama = await llamaRuntime({ gpu: false, threads: TEST_THREADS, build: TEST_BUILD });
  tokenizer = await llama.loadModel({ modelPath: files.model, vocabOnly: true });
});
afterAll(async () => {
  await tokenizer?.dispose();
  dir.remove();
});

/** An F32 tensor's values, read from the file where node-llama-cpp's GGUF reader says they are. */
async function tensors(path: string): Promise<(name: string) => Float32Array> {
  const info = await readGgufFileInfo(path);
  const fd = openSync(path, "r");
  const read = new Map<string, Float32Array>();
  for (const t of info.tensorInfo ?? []) {
    const count = t.dimensions.reduce<number>((a, d) => a * Number(d), 1);
    const bytes = Buffer.alloc(count * 4);
    readSync(fd, bytes, 0, bytes.length, Number(t.fileOffset));
    read.set(t.name, new Float32Array(bytes.buffer, bytes.byteOffset, count));
  }
  closeSync(fd);
  return (name) => read.get(name)!;
}

/**
 * The tiny model's forward pass, done here from its weights: attention and FFN outputs are zero, so
 * the state after a token is its embedding; then RMS norm and the output matrix (plus the
 * adapter's B·A). Returns ln p(next | previous token) from the log-softmax of those logits.
 */
async function independentLogProb(modelPath: string, adapterPath: string | undefined): Promise<(previous: Token, next: Token) => number> {
  const model = await tensors(modelPath);
  const adapter = adapterPath ? await tensors(adapterPath) : undefined;
  const embeddings = model("token_embd.weight");
  const output = model("output.weight");
  const norm = model("output_norm.weight");
  const E = norm.length;
  const V = output.length / E;
  return (previous, next) => {
    const x = embeddings.subarray(previous * E, previous * E + E);
    const rms = Math.sqrt(x.reduce((s, v) => s + v * v, 0) / E + 1e-5);
    const h = Array.from(x, (v, e) => (v / rms) * norm[e]!);
    const logits = new Float64Array(V);
    for (let v = 0; v < V; v++) for (let e = 0; e < E; e++) logits[v]! += output[v * E + e]! * h[e]!;
    if (adapter) {
      const a = adapter("output.weight.lora_a"); // ne [E, 1]
      const b = adapter("output.weight.lora_b"); // ne [1, V]
      const ah = h.reduce((s, v, e) => s + a[e]! * v, 0);
      for (let v = 0; v < V; v++) logits[v]! += b[v]! * ah;
    }
    const max = Math.max(...logits);
    const logSum = max + Math.log(logits.reduce((s, l) => s + Math.exp(l - max), 0));
    return logits[next]! - logSum;
  };
}

const scene = [turn("Monica", "Okay, everybody relax."), turn("Ross", "I'm relaxed.")];

async function expectedScore(reply: string, adapter?: string): Promise<{ tokens: number; logProb: number }> {
  const logProb = await independentLogProb(files.model, adapter);
  const prompt = tokenizer.tokenize(renderScript(persona, scene));
  const target = tokenizer.tokenize(` ${reply}`, false, "trimLeadingSpace");
  const previous = [prompt.at(-1)!, ...target.slice(0, -1)];
  return { tokens: target.length, logProb: target.reduce((s, t, i) => s + logProb(previous[i]!, t), 0) };
}

describe("held-out perplexity from the local model's own probabilities", () => {
  it.each([
    ["the model's own reply", "Oh, I don't know.", undefined],
    ["a reply it finds unlikely", "Hey Rachel!", undefined],
    ["the reply its adapter makes likelier", "Hey Rachel!", "adapter"],
    ["a reply of byte tokens", "Pizza? 🍕", undefined],
  ] as const)("matches an independent log-softmax over the logits computed from the weights: %s", async (_, reply, withAdapter) => {
    const adapter = withAdapter ? files.adapter : undefined;
    const backend = new LocalBackend({ modelPath: files.model, loraPath: adapter, threads: TEST_THREADS, build: TEST_BUILD, gpuLayers: 0, contextSize: 512, sequences: 1 });
    try {
      const score = await backend.scoreReply(request("c", scene), reply);
      const expected = await expectedScore(reply, adapter);
      expect(score.tokens).toBe(expected.tokens);
      // float32 inside llama.cpp against float64 here, over logits of about ±100.
      expect(score.logProb).toBeCloseTo(expected.logProb, 1);
      expect(Math.abs(score.logProb - expected.logProb)).toBeLessThan(1e-3 * Math.max(1, Math.abs(expected.logProb)));
    } finally {
      await backend.close();
    }
  });

  it("scoring after a generation in the same channel gives the same score as in a fresh one", async () => {
    const backend = new LocalBackend({ modelPath: files.model, threads: TEST_THREADS, build: TEST_BUILD, gpuLayers: 0, contextSize: 512, sequences: 1 });
    try {
      const fresh = await backend.scoreReply(request("a", scene), "Hey Rachel!");
      for await (const _ of backend.generate(request("b", scene, { stop: ["\nRoss:"] }))) void _;
      const afterGeneration = await backend.scoreReply(request("b", scene), "Hey Rachel!");
      expect(afterGeneration).toEqual(fresh);
    } finally {
      await backend.close();
    }
  });
});

function item(i: number): EvalItem {
  return {
    id: `S02E01 #1:${i}`,
    episode: "S02E01",
    scene: [
      { speaker: "Monica", text: "Okay, everybody relax." },
      { speaker: "Ross", text: `I'm relaxed, ${i}.` },
    ],
    addressed: { speaker: "Chandler", text: `Relax? ${i}` },
    reply: { speaker: "Joey", text: "Hey Rachel!" },
  };
}

describe("friend eval with local contestants", () => {
  it("reports the designed artefacts, lower perplexity with the adapter, and a clear line for a model that cannot load", async () => {
    writeFileSync(join(dir.path, "items.jsonl"), Array.from({ length: 5 }, (_, i) => JSON.stringify(item(i))).join("\n") + "\n");
    const captured = captureIo({
      cwd: dir.path,
      env: {
        LLAMA_MODEL_PATH: files.model,
        LLAMA_LORA_PATH: files.adapter,
        LLAMA_THREADS: String(TEST_THREADS),
        LLAMA_BUILD: TEST_BUILD,
        LLAMA_GPU_LAYERS: "0",
        LLAMA_CONTEXT_SIZE: "512",
        LLAMA_SEQUENCES: "2",
      },
    });
    const code = await main(
      [
        "eval", "--items", "items.jsonl", "--out", "local-run",
        "--contestant", `base=local:${files.model}`,
        "--contestant", "lora=local",
        "--contestant", `missing=local:${files.missing}`,
        "--contestant", `gunther=local:${files.guntherModel}`,
      ],
      captured.io,
    );
    expect(captured.err.filter((l) => l.startsWith("friend eval:"))).toEqual([expect.stringMatching(/^friend eval: contestant missing \(local:.*no-such-model\.gguf\) failed: .*no-such-model\.gguf/)]);
    expect(code).toBe(1);
    const summary = JSON.parse(readFileSync(join(dir.path, "local-run", "summary.json"), "utf8")) as Summary;
    const [base, lora, missing, gunther] = summary.contestants;
    expect(lora!.model).toBe("local: tiny-script.gguf + tiny-lora.gguf");
    expect(missing).toMatchObject({ items: 0, failed: expect.stringContaining("no-such-model.gguf") });
    for (const c of [base!, lora!]) {
      // Every reply was " Oh, I don't know." and a Ross line that the stop sequence caught: counted as a follow-on.
      expect(c.metrics.follow_on).toMatchObject({ count: 5, n: 5 });
      expect(c.metrics.ends.stop).toMatchObject({ count: 5, n: 5 });
      expect(c.metrics.follow_on_stops_seen).toBe(true);
      expect(c.metrics.label_leak).toMatchObject({ count: 0, n: 5 });
      expect(c.metrics.cut_share).toBe(0);
    }
    // "Gunther:" is in no stop list: the text showed it, the cleaner cut it, and the bot ended the generation.
    expect(gunther!.metrics.follow_on).toMatchObject({ count: 5, n: 5 });
    expect(gunther!.metrics.ends.cleaner).toMatchObject({ count: 5, n: 5 });
    expect(gunther!.metrics.cut_share).toBeGreaterThan(0);

    const expectedBase = await expectedScore("Hey Rachel!");
    const expectedLora = await expectedScore("Hey Rachel!", files.adapter);
    expect(base!.metrics.perplexity_tokens).toBe(5 * expectedBase.tokens);
    expect(Math.log(base!.metrics.perplexity!)).toBeCloseTo(-expectedBase.logProb / expectedBase.tokens, 2);
    expect(Math.log(lora!.metrics.perplexity!)).toBeCloseTo(-expectedLora.logProb / expectedLora.tokens, 2);
    expect(lora!.metrics.perplexity!).toBeLessThan(base!.metrics.perplexity!);
  });
});
