/**
 * The importer on adapters made here: every input dtype gives the same file, per-module scales
 * fold to PEFT's (a property over ranks and alphas), and every adapter or base it cannot convert
 * is refused with one line naming the cause, leaving no file behind.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readBaseModelShape, type BaseModelShape } from "../../src/adapters/base-model.ts";
import { AdapterError } from "../../src/adapters/errors.ts";
import { importPeftAdapter, planPairs } from "../../src/adapters/import.ts";
import { parsePeftConfig } from "../../src/adapters/peft-config.ts";
import type { SafetensorsTensor } from "../../src/adapters/safetensors.ts";
import { GgufWriter } from "../../src/gguf/writer.ts";
import { FIXTURE, FIXTURE_SHAPE, loraTensors, PLAIN_CONFIG, seededValues, writeFixtureBase, writePeftFolder, type PeftFolderSpec } from "./helpers/fixture.ts";
import type { Corruption } from "./helpers/safetensors-writer.ts";

let dir: string;
let baseFile: string;
let base: BaseModelShape;
let n = 0;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "friend-adapter-import-"));
  baseFile = writeFixtureBase(join(dir, "base.gguf"));
  base = await readBaseModelShape(baseFile);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("input dtypes", () => {
  it("F32, F16 and BF16 weights holding the same values give byte-identical imports", async () => {
    const files = [];
    for (const dtype of ["F32", "F16", "BF16"] as const) {
      const out = join(dir, `dtype-${dtype}.gguf`);
      // One folder name for all three: general.name comes from it.
      await importPeftAdapter({ peftDir: writePeftFolder(join(dir, dtype, "adapter"), { dtype }), base, out, outType: "f32" });
      files.push(readFileSync(out));
    }
    expect(files[1]!.equals(files[0]!)).toBe(true);
    expect(files[2]!.equals(files[0]!)).toBe(true);
  });
});

describe("per-module scales", () => {
  const tensor = (name: string, shape: number[]): SafetensorsTensor => ({ name, dtype: "F32", shape, begin: 0, end: 0 });
  const prefix = "base_model.model.model.layers.0.self_attn";

  it("every module runs at PEFT's scale: llama.cpp's alpha/rank times the folded factor is alpha_m/r_m, or alpha_m/sqrt(r_m) for rsLoRA", () => {
    fc.assert(
      fc.property(
        fc.record({
          r: fc.integer({ min: 1, max: 64 }),
          alpha: fc.double({ min: 0.5, max: 256, noNaN: true }),
          qRank: fc.integer({ min: 1, max: 64 }),
          vAlpha: fc.double({ min: 0.5, max: 256, noNaN: true }),
          rslora: fc.boolean(),
        }),
        ({ r, alpha, qRank, vAlpha, rslora }) => {
          const config = parsePeftConfig({ ...PLAIN_CONFIG, r, lora_alpha: alpha, use_rslora: rslora, rank_pattern: { q_proj: qRank }, alpha_pattern: { v_proj: vAlpha } }, "adapter_config.json");
          const tensors = new Map<string, SafetensorsTensor>();
          for (const [module, rank, out] of [["q_proj", qRank, 64], ["v_proj", r, 32], ["o_proj", r, 64]] as const) {
            tensors.set(`${prefix}.${module}.lora_A.weight`, tensor(`${prefix}.${module}.lora_A.weight`, [rank, 64]));
            tensors.set(`${prefix}.${module}.lora_B.weight`, tensor(`${prefix}.${module}.lora_B.weight`, [out, rank]));
          }
          const plan = planPairs(config, { path: "adapter_model.safetensors", tensors }, base);
          for (const pair of plan.pairs) {
            const moduleAlpha = pair.module === "v_proj" ? vAlpha : alpha;
            const peftScale = rslora ? moduleAlpha / Math.sqrt(pair.rank) : moduleAlpha / pair.rank;
            const llamaScale = (Math.fround(plan.alpha) / pair.rank) * pair.factor;
            expect(Math.abs(llamaScale - peftScale) / peftScale).toBeLessThan(1e-6);
          }
        },
      ),
    );
  });
});

/** Copies the fixture adapter and lets a case break it. */
function fixtureCopy(change: (folder: string) => void): string {
  const folder = join(dir, `fixture-copy-${n++}`);
  writePeftFolder(folder, { tensors: [] });
  for (const f of ["adapter_config.json", "adapter_model.safetensors"]) writeFileSync(join(folder, f), readFileSync(join(FIXTURE, "adapter", f)));
  change(folder);
  return folder;
}

interface RefusalCase {
  name: string;
  folder: () => string;
  base?: () => string;
  error: RegExp;
}

const folder = (spec: PeftFolderSpec = {}, corrupt: Corruption = {}) => () => writePeftFolder(join(dir, `case-${n++}`), spec, corrupt);
const goodTensors = () => loraTensors(4);
const extra = (name: string, shape: number[]) => () => writePeftFolder(join(dir, `case-${n++}`), { tensors: [...goodTensors(), { name, dtype: "F32", shape, values: seededValues(shape.reduce((a, b) => a * b, 1), 3) }] });
const ggufBase = (arch: string, type?: string) => () => {
  const path = join(dir, `base-${n++}.gguf`);
  const w = new GgufWriter().string("general.architecture", arch);
  if (type) w.string("general.type", type);
  w.u32(`${arch}.embedding_length`, 64).tensor("t", [4], "f32", new Float32Array(4)).write(path);
  return path;
};

const CASES: RefusalCase[] = [
  { name: "a missing adapter_config.json", folder: () => fixtureCopy((f) => rmSync(join(f, "adapter_config.json"))), error: /has no adapter_config\.json: give the folder PEFT's save_pretrained wrote/ },
  { name: "a missing adapter_model.safetensors", folder: () => fixtureCopy((f) => rmSync(join(f, "adapter_model.safetensors"))), error: /has no adapter_model\.safetensors/ },
  { name: "only a pickled adapter_model.bin", folder: () => fixtureCopy((f) => { rmSync(join(f, "adapter_model.safetensors")); writeFileSync(join(f, "adapter_model.bin"), "PK"); }), error: /adapter_model\.bin \(a pickle\).*safe_serialization=True/ },
  { name: "an adapter_config.json that is not JSON", folder: () => fixtureCopy((f) => writeFileSync(join(f, "adapter_config.json"), "{r: 4")), error: /adapter_config\.json is not valid JSON/ },
  { name: "a truncated safetensors file", folder: () => fixtureCopy((f) => writeFileSync(join(f, "adapter_model.safetensors"), readFileSync(join(FIXTURE, "adapter", "adapter_model.safetensors")).subarray(0, 9000))), error: /ends at byte \d+ of the data, but the file holds only \d+ bytes of data \(truncated\?\)/ },
  { name: "a file cut inside its header", folder: folder({}, { truncateTo: 100 }), error: /its header says it is \d+ bytes long, but the file has only 92/ },
  { name: "a header whose offsets overlap", folder: folder({}, { offsets: { "base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight": [0, 512] } }), error: /overlaps the tensor before it|leaving a gap/ },
  { name: "a header whose offsets disagree with the shape", folder: folder({}, { offsets: { "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": [0, 100] } }), error: /needs 1024 bytes, but its data_offsets \[0, 100\] span 100/ },
  { name: "a header that is not JSON", folder: folder({}, { headerText: "{not json" }), error: /its header is not valid JSON/ },
  { name: "an I64 tensor", folder: () => writePeftFolder(join(dir, `case-${n++}`), { tensors: [] }, { headerText: JSON.stringify({ x: { dtype: "I64", shape: [0], data_offsets: [0, 0] } }) }), error: /is I64; adapters must be F32, F16 or BF16/ },
  { name: "DoRA (use_dora)", folder: folder({ config: { use_dora: true } }), error: /use_dora is true: a DoRA adapter has magnitude vectors/ },
  { name: "DoRA magnitude vectors without use_dora", folder: extra("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector", [64]), error: /is a DoRA magnitude vector/ },
  { name: "modules_to_save", folder: folder({ config: { modules_to_save: ["lm_head"] } }), error: /modules_to_save is \["lm_head"\]: fully trained copies of modules/ },
  { name: "a fully trained weight in the file", folder: extra("base_model.model.model.norm.weight", [64]), error: /is a fully trained weight \(modules_to_save\)/ },
  { name: "LoRA on the embeddings", folder: extra("base_model.model.model.embed_tokens.lora_embedding_A", [4, 256]), error: /is a LoRA on the token embeddings/ },
  { name: "LoRA on the output head", folder: extra("base_model.model.lm_head.lora_A.weight", [4, 64]), error: /is a LoRA on the output head \(lm_head\)/ },
  { name: "LoRA on a module Llama lacks", folder: extra("base_model.model.model.layers.0.self_attn.qkv_proj.lora_A.weight", [4, 64]), error: /is a LoRA on qkv_proj, which a Llama model does not have/ },
  { name: "a rank that disagrees with r", folder: folder({ config: { r: 8 }, tensors: loraTensors(4) }), error: /layer 0 k_proj has rank 4, but adapter_config.json says 8/ },
  { name: "a lora_A without its lora_B", folder: folder({ tensors: loraTensors(4).filter((t) => !t.name.endsWith("layers.1.self_attn.v_proj.lora_B.weight")) }), error: /layer 1 v_proj has a lora_A but no lora_B/ },
  { name: "rsLoRA alpha 0", folder: folder({ config: { lora_alpha: 0 } }), error: /lora_alpha is 0; it must be a positive number/ },
  { name: "another PEFT method", folder: folder({ config: { peft_type: "IA3" } }), error: /peft_type is "IA3"; only LoRA adapters/ },
  { name: "an adapter for a wider model", folder: () => writePeftFolder(join(dir, `case-${n++}`), { tensors: loraTensors(4).map((t) => (t.name.includes("layers.0.self_attn.q_proj.lora_A") ? { ...t, shape: [4, 128], values: seededValues(512, 1) } : t)) }), error: /the rank 4 LoRA on layer 0 q_proj expects an input size of 128; the base's q_proj takes 64: is .*base\.gguf the right base model\?/ },
  { name: "an adapter with more layers than the base", folder: folder({ tensors: loraTensors(4, "F32", {}, 3) }), error: /the adapter has layer 2, but the base model .* has only 2 layers/ },
  { name: "a base that is not a GGUF", folder: folder(), base: () => join(FIXTURE, "adapter", "adapter_model.safetensors"), error: /the base model .*adapter_model\.safetensors is not a GGUF file \(it starts with bytes/ },
  { name: "a base of another architecture", folder: folder(), base: ggufBase("gpt2"), error: /is a "gpt2" model; only Llama models/ },
  { name: "a base that is an adapter", folder: folder(), base: () => join(FIXTURE, "reference-f32.gguf"), error: /is itself an adapter/ },
  { name: "a base config.json of another architecture", folder: folder(), base: () => { const p = join(dir, `config-${n++}.json`); writeFileSync(p, JSON.stringify({ architectures: ["GPT2LMHeadModel"], model_type: "gpt2" })); return p; }, error: /is not a Llama model's \(architectures \["GPT2LMHeadModel"\]/ },
  { name: "a base that does not exist", folder: folder(), base: () => join(dir, "nowhere.gguf"), error: /the base model .*nowhere\.gguf does not exist/ },
];

describe("refusals: one line naming the cause, and no file written", () => {
  it.each(CASES)("$name", async ({ folder: makeFolder, base: makeBase, error }) => {
    const outDir = join(dir, `out-${n++}`);
    const out = join(outDir, "adapter.gguf");
    const attempt = async () => importPeftAdapter({ peftDir: makeFolder(), base: await readBaseModelShape(makeBase?.() ?? baseFile), out, outType: "f16" });
    const err = await attempt().then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(AdapterError);
    expect((err as Error).message).toMatch(error);
    expect((err as Error).message).not.toContain("\n");
    expect(existsSync(out)).toBe(false);
    expect(existsSync(outDir) ? readdirSync(outDir) : []).toEqual([]);
  });
});
