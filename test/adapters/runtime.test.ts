/**
 * The imported adapter at run time: a synthetic base with the fixture's shapes, loaded through
 * node-llama-cpp (real llama.cpp inference), gives exactly the same next-token distribution with
 * Friend's import as with llama.cpp's own conversion; at scale 0 it is the base's. And
 * LLAMA_LORA_PATH naming the PEFT folder imports it once and loads it.
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Llama, LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readBaseModelShape } from "../../src/adapters/base-model.ts";
import { importPeftAdapter } from "../../src/adapters/import.ts";
import { LocalBackend } from "../../src/backends/local.ts";
import { importedPeftAdapter } from "../../src/backends/local/peft-adapter.ts";
import { llamaRuntime } from "../../src/backends/local/runtime.ts";
import { FakeModelServer } from "../fakes/model-server.ts";
import { capturingLogger, TEST_BUILD, TEST_THREADS } from "../local/helpers.ts";
import { FIXTURE, loraTensors, writeFixtureBase, writePeftFolder } from "./helpers/fixture.ts";

let dir: string;
let baseFile: string;
let llama: Llama;
let model: LlamaModel;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "friend-adapter-runtime-"));
  baseFile = writeFixtureBase(join(dir, "base.gguf"));
  llama = await llamaRuntime({ gpu: false, threads: TEST_THREADS, build: TEST_BUILD });
  model = await llama.loadModel({ modelPath: baseFile, gpuLayers: 0 });
});
afterAll(async () => {
  await model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** The full next-token distribution after a short prompt, with the adapter at `scale` (none: the base alone). */
async function distribution(adapter?: { file: string; scale: number }): Promise<Map<number, number>> {
  const context = await model.createContext({ contextSize: 64, threads: TEST_THREADS, ...(adapter ? { lora: { adapters: [{ filePath: adapter.file, scale: adapter.scale }] } } : {}) });
  try {
    const prompt = [model.tokens.bos!, ...model.tokenize("the quick brown fox")];
    const last = prompt.length - 1;
    const out = await context.getSequence().controlledEvaluate(prompt.map((t, i) => (i === last ? ([t, { generateNext: { probabilities: true } }] as const) : t)));
    return new Map(out[last]!.next!.probabilities!);
  } finally {
    await context.dispose();
  }
}

describe.each(["f32", "f16"] as const)("imported as %s", (outType) => {
  let imported: string;
  beforeAll(async () => {
    imported = join(dir, `imported-${outType}.gguf`);
    await importPeftAdapter({ peftDir: join(FIXTURE, "adapter"), base: await readBaseModelShape(baseFile), out: imported, outType });
  });

  it("gives the same distribution as llama.cpp's own conversion, and not the base's", async () => {
    const [base, ours, theirs] = [await distribution(), await distribution({ file: imported, scale: 1 }), await distribution({ file: join(FIXTURE, `reference-${outType}.gguf`), scale: 1 })];
    expect(ours).toEqual(theirs);
    expect(ours.size).toBe(base.size);
    const moved = [...base].reduce((sum, [token, p]) => sum + Math.abs(p - ours.get(token)!), 0);
    expect(moved).toBeGreaterThan(1e-4);
  });

  it("at scale 0 gives the base's distribution", async () => {
    expect(await distribution({ file: imported, scale: 0 })).toEqual(await distribution());
  });
});

/**
 * What the Python converter gets wrong, judged by llama.cpp itself: it scales an adapter by
 * user_scale·alpha/rank, so an adapter imported right must run like the plain one at the scale
 * PEFT trained it with.
 */
describe("scales the Python converter ignores", () => {
  async function imported(name: string, spec: Parameters<typeof writePeftFolder>[1]): Promise<string> {
    const out = join(dir, `${name}.gguf`);
    await importPeftAdapter({ peftDir: writePeftFolder(join(dir, name), spec), base: await readBaseModelShape(baseFile), out, outType: "f32" });
    return out;
  }

  it("rsLoRA (r 4, alpha 8) runs at alpha/sqrt(r) = 4: as the plain adapter at user scale 2, not 1", async () => {
    const rs = await imported("rslora", { config: { use_rslora: true } });
    const plain = await imported("rslora-plain", {});
    const got = await distribution({ file: rs, scale: 1 });
    expect(got).toEqual(await distribution({ file: plain, scale: 2 }));
    expect(got).not.toEqual(await distribution({ file: plain, scale: 1 }));
  });

  it("alpha_pattern {v_proj: 16} runs v_proj at twice the others' scale: as v_proj's lora_B doubled", async () => {
    const patterned = await imported("alpha-pattern", { config: { alpha_pattern: { v_proj: 16 } } });
    const doubled = loraTensors(4).map((t) => (/v_proj\.lora_B/.test(t.name) ? { ...t, values: t.values.map((v) => v * 2) } : t));
    const manual = await imported("alpha-pattern-manual", { tensors: doubled });
    expect(await distribution({ file: patterned, scale: 1 })).toEqual(await distribution({ file: manual, scale: 1 }));
  });
});

describe("LLAMA_LORA_PATH naming a PEFT folder", () => {
  it("is imported once into adapters/ under its content hash, then reused; a changed adapter is imported again", async () => {
    const peftDir = join(dir, "friends-peft");
    cpSync(join(FIXTURE, "adapter"), peftDir, { recursive: true });
    const adaptersDir = join(dir, "adapters");
    const { logger, lines } = capturingLogger();
    const progress: string[] = [];
    const options = { adaptersDir, log: logger, onProgress: (text: string) => progress.push(text) };

    const first = await importedPeftAdapter(peftDir, baseFile, options);
    expect(first).toMatch(/adapters\/friends-peft-[0-9a-f]{12}\.gguf$/);
    expect(lines.filter((l) => l.msg === "imported PEFT adapter")).toHaveLength(1);
    expect(progress.at(-1)).toBe("importing the PEFT adapter friends-peft (100%)");
    // The same bytes as an explicit f32 import.
    const explicit = join(dir, "explicit.gguf");
    await importPeftAdapter({ peftDir, base: await readBaseModelShape(baseFile), out: explicit, outType: "f32" });
    expect(readFileSync(first).equals(readFileSync(explicit))).toBe(true);

    const written = statSync(first).mtimeMs;
    expect(await importedPeftAdapter(peftDir, baseFile, options)).toBe(first);
    expect(statSync(first).mtimeMs).toBe(written);
    expect(lines.filter((l) => l.msg === "imported PEFT adapter")).toHaveLength(1);

    const config = JSON.parse(readFileSync(join(peftDir, "adapter_config.json"), "utf8")) as Record<string, unknown>;
    writeFileSync(join(peftDir, "adapter_config.json"), JSON.stringify({ ...config, lora_alpha: 16 }));
    const second = await importedPeftAdapter(peftDir, baseFile, options);
    expect(second).not.toBe(first);
    expect(lines.filter((l) => l.msg === "imported PEFT adapter")).toHaveLength(2);
  });

  it.each(["adapter_config.json", "adapter_model.safetensors"])("with %s a named pipe: refused at once, never waited on for a writer", async (file) => {
    const peftDir = join(dir, `fifo-${file}`);
    cpSync(join(FIXTURE, "adapter"), peftDir, { recursive: true });
    rmSync(join(peftDir, file));
    execFileSync("mkfifo", [join(peftDir, file)]);
    const options = { adaptersDir: join(dir, "fifo-adapters"), log: capturingLogger().logger, onProgress: () => undefined };
    await expect(importedPeftAdapter(peftDir, baseFile, options)).rejects.toMatchObject({
      kind: "load",
      message: `Cannot import the PEFT adapter in ${peftDir} (LLAMA_LORA_PATH): ${file} is not a file.`,
    });
  }, 10_000);

  it("loads in the local backend, which names the folder as its adapter", async () => {
    const adaptersDir = join(dir, "backend-adapters");
    const { logger, lines } = capturingLogger();
    const backend = new LocalBackend({ modelPath: baseFile, loraPath: join(FIXTURE, "adapter"), adaptersDir, threads: TEST_THREADS, build: TEST_BUILD, gpuLayers: 0, contextSize: 256, sequences: 1, logger });
    try {
      await backend.prepare();
      expect(backend.describe()).toMatchObject({ adapter: "adapter", loaded: true });
      const loaded = lines.find((l) => l.msg === "loading local model");
      expect(loaded?.adapter).toMatch(/backend-adapters\/adapter-[0-9a-f]{12}\.gguf$/);
      expect(lines.some((l) => l.msg === "imported PEFT adapter")).toBe(true);
    } finally {
      await backend.close();
    }
  });

  it("as hf:user/repo downloads the PEFT files into adapters/ once, imports them, and later loads them offline", async () => {
    const server = await FakeModelServer.start();
    const adaptersDir = join(dir, "hf-adapters");
    const read = (f: string) => readFileSync(join(FIXTURE, "adapter", f));
    server.huggingFace("friends/peft-lora", { "adapter_config.json": read("adapter_config.json"), "adapter_model.safetensors": read("adapter_model.safetensors") });
    const open = (logger: ReturnType<typeof capturingLogger>["logger"]) =>
      new LocalBackend({ modelPath: baseFile, loraPath: "hf:friends/peft-lora", huggingFaceEndpoint: `${server.url}/`, adaptersDir, threads: TEST_THREADS, build: TEST_BUILD, gpuLayers: 0, contextSize: 256, sequences: 1, logger, progressBar: false });
    try {
      const first = capturingLogger();
      const backend = open(first.logger);
      try {
        await backend.prepare();
      } finally {
        await backend.close();
      }
      const adapter = first.lines.find((l) => l.msg === "loading local model")?.adapter as string;
      expect(adapter).toMatch(/hf-adapters\/hf_friends_peft-lora-[0-9a-f]{12}\.gguf$/);
      expect(server.downloads("/friends/peft-lora/resolve/main/adapter_model.safetensors").length).toBeGreaterThan(0);
      expect(readFileSync(join(adaptersDir, "hf_friends_peft-lora", "adapter_model.safetensors")).equals(read("adapter_model.safetensors"))).toBe(true);

      const requests = server.requests.length;
      await server.stop();
      const second = capturingLogger();
      const again = open(second.logger);
      try {
        await again.prepare();
      } finally {
        await again.close();
      }
      expect(second.lines.find((l) => l.msg === "loading local model")?.adapter).toBe(adapter);
      expect(second.lines.some((l) => l.msg === "imported PEFT adapter")).toBe(false);
      expect(server.requests.length).toBe(requests);
    } finally {
      await server.stop().catch(() => undefined);
    }
  });
});
