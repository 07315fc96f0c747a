/**
 * `friend adapter import`: a PEFT LoRA folder (adapter_config.json + adapter_model.safetensors)
 * into the GGUF adapter llama.cpp's convert_lora_to_gguf.py writes, checked against the base
 * model it will run on. Tensors are read, permuted and written one at a time; the output appears
 * only when whole (written to a temporary file, then renamed).
 *
 * Where the Python converter is silent, the import does better (docs/FINETUNING.md):
 * - rsLoRA (`use_rslora`): the written alpha is alpha·sqrt(r), so that llama.cpp's alpha/r is
 *   PEFT's alpha/sqrt(r). The converter writes alpha, and the adapter runs sqrt(r) times too weak.
 * - `rank_pattern` / `alpha_pattern`: llama.cpp has one alpha per file but takes each module's rank
 *   from its tensors; a module whose PEFT scale differs from that gets the difference folded into
 *   its lora_b, so every module runs at its trained scale.
 * - Shapes, ranks and layers are checked against the base before anything is written.
 */
import { existsSync } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { GgufWriter, Q8_0_BLOCK, type GgmlTypeName } from "../gguf/writer.ts";
import type { BaseModelShape } from "./base-model.ts";
import { AdapterError } from "./errors.ts";
import { LLAMA_MODULES, parsePeftTensorName, permuteRopeRows } from "./llama-lora.ts";
import { describeAdapter, writeDescription } from "./model-card.ts";
import { ADAPTER_WEIGHTS_FILE, patternFor, readPeftConfig, type PeftLoraConfig } from "./peft-config.ts";
import { SafetensorsError, SafetensorsFile, type SafetensorsTensor } from "./safetensors.ts";

export const ADAPTER_OUT_TYPES = ["f32", "f16", "bf16", "q8_0"] as const;
export type AdapterOutType = (typeof ADAPTER_OUT_TYPES)[number];

/** gguf-py's GGML_QUANT_VERSION, which the converter writes into every file. */
const QUANTIZATION_VERSION = 2;

export interface ImportAdapterOptions {
  peftDir: string;
  base: BaseModelShape;
  out: string;
  outType: AdapterOutType;
  /** general.name when the folder's name is not the adapter's (a download cache, say). */
  nameHint?: string;
  /** Called after each LoRA pair is written. */
  onProgress?(done: number, total: number): void;
}

export interface ImportedAdapter {
  out: string;
  bytes: number;
  pairs: number;
  /** The alpha written to adapter.lora.alpha. */
  alpha: number;
  /** Each place where the import changed something the Python converter would not, in words. */
  notes: string[];
}

/** One LoRA pair of the output, in the converter's order. */
interface PlannedPair {
  ggufBase: string;
  module: string;
  a: SafetensorsTensor;
  b: SafetensorsTensor;
  rank: number;
  /** Multiplies lora_b, folding a per-module scale into the single alpha (1: none). */
  factor: number;
}

export async function importPeftAdapter(options: ImportAdapterOptions): Promise<ImportedAdapter> {
  const { peftDir, base, out, outType } = options;
  const config = await readPeftConfig(peftDir);
  const weights = await openWeights(peftDir);
  try {
    const { pairs, alpha, notes } = planPairs(config, weights, base);
    const description = await describeAdapter(peftDir, options.nameHint);
    const writer = new GgufWriter()
      .string("general.architecture", base.architecture)
      .string("general.type", "adapter")
      .string("adapter.type", "lora");
    writeDescription(writer, description);
    writer.f32("adapter.lora.alpha", alpha).u32("general.quantization_version", QUANTIZATION_VERSION);

    let done = 0;
    const after = <T>(value: T): T => {
      options.onProgress?.(++done, pairs.length * 2);
      return value;
    };
    for (const pair of pairs) {
      const [outSize, inSize] = [pair.b.shape[0]!, pair.a.shape[1]!];
      writer.tensor(`${pair.ggufBase}.lora_a`, [inSize, pair.rank], tensorType(outType, inSize), {
        load: async () => after(await weights.readFloat32(pair.a.name)),
      });
      writer.tensor(`${pair.ggufBase}.lora_b`, [pair.rank, outSize], tensorType(outType, pair.rank), {
        load: async () => {
          let values = await weights.readFloat32(pair.b.name);
          const heads = LLAMA_MODULES[pair.module]!.ropeHeads?.(base);
          if (heads !== undefined) values = permuteRopeRows(values, outSize, pair.rank, heads);
          if (pair.factor !== 1) for (let i = 0; i < values.length; i++) values[i] = values[i]! * pair.factor;
          return after(values);
        },
      });
    }

    await mkdir(dirname(out), { recursive: true });
    const partial = join(dirname(out), `.${basename(out)}.${process.pid}.partial`);
    try {
      const bytes = await writer.writeAsync(partial);
      await rename(partial, out);
      return { out, bytes, pairs: pairs.length, alpha, notes };
    } catch (err) {
      await rm(partial, { force: true });
      if (err instanceof SafetensorsError) throw new AdapterError(err.message);
      throw err;
    }
  } finally {
    await weights.close();
  }
}

async function openWeights(dir: string): Promise<SafetensorsFile> {
  const path = join(dir, ADAPTER_WEIGHTS_FILE);
  try {
    return await SafetensorsFile.open(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      if (existsSync(join(dir, "adapter_model.bin"))) {
        throw new AdapterError(`${dir} has adapter_model.bin (a pickle) but no ${ADAPTER_WEIGHTS_FILE}: save the adapter again with save_pretrained(..., safe_serialization=True)`);
      }
      throw new AdapterError(`${dir} has no ${ADAPTER_WEIGHTS_FILE}: give the folder PEFT's save_pretrained wrote`);
    }
    if (err instanceof SafetensorsError) throw new AdapterError(err.message);
    throw new AdapterError(`cannot read ${path}: ${(err as Error).message}`);
  }
}

/**
 * Pairs each module's lora_A and lora_B in the converter's order (sorted PEFT names), checks them
 * against the config and the base, and works out the alpha to write and any per-module factor.
 */
export function planPairs(config: PeftLoraConfig, weights: Pick<SafetensorsFile, "path" | "tensors">, base: BaseModelShape): { pairs: PlannedPair[]; alpha: number; notes: string[] } {
  const file = weights.path;
  const found = new Map<string, { module: string; moduleName: string; layer: number; a?: SafetensorsTensor; b?: SafetensorsTensor }>();
  for (const name of [...weights.tensors.keys()].sort()) {
    const parsed = parsePeftTensorName(name);
    if (parsed.kind === "refused") throw new AdapterError(`${file}: ${parsed.reason}`);
    const entry = found.get(parsed.ggufBase) ?? { module: parsed.module, moduleName: parsed.moduleName, layer: parsed.layer };
    entry[parsed.matrix === "A" ? "a" : "b"] = weights.tensors.get(name)!;
    found.set(parsed.ggufBase, entry);
  }
  if (found.size === 0) throw new AdapterError(`${file} holds no LoRA tensors`);

  const alpha = config.useRslora ? config.alpha * Math.sqrt(config.rank) : config.alpha;
  const notes: string[] = [];
  if (config.useRslora) notes.push(`rsLoRA: adapter.lora.alpha is ${config.alpha}·sqrt(${config.rank}) = ${alpha}, so that llama.cpp's alpha/rank is PEFT's alpha/sqrt(rank)`);
  const folded: string[] = [];
  const pairs: PlannedPair[] = [];
  for (const [ggufBase, { module, moduleName, layer, a, b }] of found) {
    const where = `layer ${layer} ${module}`;
    if (!a || !b) throw new AdapterError(`${file}: ${where} has a lora_${a ? "A" : "B"} but no lora_${a ? "B" : "A"}`);
    if (a.shape.length !== 2 || b.shape.length !== 2) throw new AdapterError(`${file}: ${where}'s LoRA matrices are not two-dimensional ([${a.shape}] and [${b.shape}])`);
    const rank = a.shape[0]!;
    if (b.shape[1] !== rank) throw new AdapterError(`${file}: ${where}'s lora_A has rank ${rank} but its lora_B has ${b.shape[1]}`);
    const configured = patternFor(config.rankPattern, moduleName) ?? config.rank;
    if (rank !== configured) throw new AdapterError(`${file}: ${where} has rank ${rank}, but adapter_config.json says ${configured}${Object.keys(config.rankPattern).length ? " (with its rank_pattern)" : ""}: the config and the weights do not belong together`);
    if (layer >= base.blockCount) throw new AdapterError(`${file}: the adapter has layer ${layer}, but the base model ${base.source} has only ${base.blockCount} layers: is it the right base model?`);
    const spec = LLAMA_MODULES[module]!;
    const [wantIn, wantOut] = [spec.inSize(base), spec.outSize(base)];
    if (a.shape[1] !== wantIn || b.shape[0] !== wantOut) {
      const what = a.shape[1] !== wantIn ? `an input size of ${a.shape[1]}; the base's ${module} takes ${wantIn}` : `an output size of ${b.shape[0]}; the base's ${module} gives ${wantOut}`;
      throw new AdapterError(`${file}: the rank ${rank} LoRA on ${where} expects ${what}: is ${base.source} the right base model?`);
    }
    const moduleAlpha = patternFor(config.alphaPattern, moduleName) ?? config.alpha;
    const effective = config.useRslora ? moduleAlpha * Math.sqrt(rank) : moduleAlpha;
    const factor = effective === alpha ? 1 : effective / alpha;
    if (factor !== 1) folded.push(`${where} ×${+factor.toPrecision(6)}`);
    pairs.push({ ggufBase, module, a, b, rank, factor });
  }
  if (folded.length > 0) notes.push(`rank_pattern/alpha_pattern: ${folded.length} module${folded.length === 1 ? "" : "s"} at another scale than the default; their lora_b scaled to match (${folded.slice(0, 4).join(", ")}${folded.length > 4 ? ", …" : ""})`);
  return { pairs, alpha, notes };
}

/** The converter's choice: the asked type, except Q8_0 rows must fill whole blocks (else F16, as gguf-py falls back). */
function tensorType(outType: AdapterOutType, rowLength: number): GgmlTypeName {
  if (outType === "q8_0" && rowLength % Q8_0_BLOCK !== 0) return "f16";
  return outType;
}
