import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { SafetensorsDtype } from "../../../src/adapters/safetensors.ts";
import { writeSafetensors, type Corruption, type TensorToWrite } from "./safetensors-writer.ts";
import { writeSyntheticLlama, type LlamaShape } from "../../gguf/synthetic-llama.ts";

/** The tiny PEFT adapter and llama.cpp's conversions of it (see its README). */
export const FIXTURE = fileURLToPath(new URL("../fixtures/peft-lora-tiny", import.meta.url));

/**
 * The fixture base's shapes (base/config.json). The vocabulary is larger than its 256: the
 * synthetic tokenizer needs room for its specials and byte tokens, and no adapter tensor depends on it.
 */
export const FIXTURE_SHAPE: LlamaShape = { embedding: 64, feedForward: 128, layers: 2, heads: 4, kvHeads: 2, vocab: 384, contextLength: 256 };

/** A synthetic Llama GGUF with the fixture base's shapes, random F32-normed F16 weights. */
export function writeFixtureBase(path: string, shape: LlamaShape = FIXTURE_SHAPE): string {
  writeSyntheticLlama(path, shape, "f16");
  return path;
}

export interface PeftFolderSpec {
  /** Merged over a plain config: r 4, alpha 8, q/k/v/o. */
  config?: Record<string, unknown>;
  /** The tensors; default: a LoRA of rank `config.r` on q/k/v/o of both layers at the fixture's shapes. */
  tensors?: TensorToWrite[];
  dtype?: SafetensorsDtype;
  /** Overrides the rank of some modules' tensors, by module name (q_proj, …). */
  ranks?: Record<string, number>;
}

/** Seeded values in [-0.1, 0.1), exactly representable in every dtype (multiples of 2^-10). */
export function seededValues(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = Math.round(((s >>> 0) / 4294967296 - 0.5) * 0.2 * 1024) / 1024;
  }
  return out;
}

/** The fixture shapes' [out, in] for each attention module. */
const ATTENTION: Record<string, [number, number]> = { q_proj: [64, 64], k_proj: [32, 64], v_proj: [32, 64], o_proj: [64, 64] };

export function loraTensors(rank: number, dtype: SafetensorsDtype = "F32", ranks: Record<string, number> = {}, layers = 2): TensorToWrite[] {
  const tensors: TensorToWrite[] = [];
  let seed = 7;
  for (let layer = 0; layer < layers; layer++) {
    for (const [module, [out, inSize]] of Object.entries(ATTENTION)) {
      const r = ranks[module] ?? rank;
      const prefix = `base_model.model.model.layers.${layer}.self_attn.${module}`;
      tensors.push({ name: `${prefix}.lora_A.weight`, dtype, shape: [r, inSize], values: seededValues(r * inSize, seed++) });
      tensors.push({ name: `${prefix}.lora_B.weight`, dtype, shape: [out, r], values: seededValues(out * r, seed++) });
    }
  }
  return tensors;
}

export const PLAIN_CONFIG = { peft_type: "LORA", r: 4, lora_alpha: 8, target_modules: ["q_proj", "k_proj", "v_proj", "o_proj"], use_rslora: false, use_dora: false, modules_to_save: null, bias: "none", rank_pattern: {}, alpha_pattern: {} };

/** Writes a PEFT adapter folder as save_pretrained would (config + safetensors). */
export function writePeftFolder(dir: string, spec: PeftFolderSpec = {}, corrupt: Corruption = {}): string {
  mkdirSync(dir, { recursive: true });
  const config = { ...PLAIN_CONFIG, ...spec.config };
  writeFileSync(join(dir, "adapter_config.json"), JSON.stringify(config, null, 2));
  writeSafetensors(join(dir, "adapter_model.safetensors"), spec.tensors ?? loraTensors(config.r as number, spec.dtype, spec.ranks), corrupt);
  return dir;
}
