/**
 * `friend adapter inspect`: what a GGUF LoRA adapter or a PEFT folder holds, in a few lines:
 * rank, alpha and the scale they make, the modules it targets, the base model it names, its size
 * and its dtypes.
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { DamagedGgufError, NotGgufError, kvNumber, kvString, readGgufFile } from "../gguf/reader.ts";
import { AdapterError } from "./errors.ts";
import { LLAMA_MODULES, parsePeftTensorName } from "./llama-lora.ts";
import { ADAPTER_WEIGHTS_FILE, readPeftConfig } from "./peft-config.ts";
import { SafetensorsError, SafetensorsFile } from "./safetensors.ts";

export interface AdapterInspection {
  format: "GGUF" | "PEFT";
  path: string;
  architecture: string | undefined;
  /** Ranks found (several with a rank_pattern). */
  ranks: number[];
  alpha: number | undefined;
  /** What the scale is, in words, e.g. "2 (alpha/rank)". */
  scale: string;
  /** Hugging Face module names (q_proj, …), in llama.cpp's order of a block. */
  targets: string[];
  layers: number;
  baseModel: string | undefined;
  bytes: number;
  dtypes: string[];
  notes: string[];
}

const GGUF_TO_HF = new Map(Object.entries(LLAMA_MODULES).map(([hf, m]) => [m.gguf, hf]));

export async function inspectAdapter(path: string): Promise<AdapterInspection> {
  let info;
  try {
    info = await stat(path);
  } catch {
    throw new AdapterError(`${path} does not exist`);
  }
  return info.isDirectory() ? inspectPeft(path) : inspectGguf(path, info.size);
}

async function inspectGguf(path: string, bytes: number): Promise<AdapterInspection> {
  let layout;
  try {
    layout = await readGgufFile(path);
  } catch (err) {
    if (err instanceof NotGgufError) throw new AdapterError(`${path} is neither a GGUF file (${err.message}) nor a PEFT adapter folder`);
    if (err instanceof DamagedGgufError) throw new AdapterError(`${path} is damaged or truncated: ${err.message}`);
    throw new AdapterError(`cannot read ${path}: ${(err as Error).message}`);
  }
  if (layout.type !== "adapter" || kvString(layout.kvs, "adapter.type") !== "lora") {
    throw new AdapterError(`${path} is not a LoRA adapter (general.type is ${JSON.stringify(layout.type ?? null)}, adapter.type ${JSON.stringify(kvString(layout.kvs, "adapter.type") ?? null)})`);
  }
  const ranks = new Set<number>();
  const targets = new Set<string>();
  const layers = new Set<string>();
  for (const t of layout.tensors) {
    const m = /^blk\.(\d+)\.([a-z_]+)\.weight\.lora_([ab])$/.exec(t.name);
    if (m) {
      layers.add(m[1]!);
      targets.add(GGUF_TO_HF.get(m[2]!) ?? m[2]!);
    } else if (/\.lora_[ab]$/.test(t.name)) {
      targets.add(t.name.replace(/\.weight\.lora_[ab]$/, ""));
    }
    if (t.name.endsWith(".lora_a")) ranks.add(t.ne[1] ?? 1);
  }
  const alpha = kvNumber(layout.kvs, "adapter.lora.alpha");
  const baseName = kvString(layout.kvs, "general.base_model.0.repo_url") ?? kvString(layout.kvs, "general.base_model.0.name");
  return {
    format: "GGUF",
    path,
    architecture: layout.architecture,
    ranks: [...ranks].sort((a, b) => a - b),
    alpha,
    scale: describeScale(alpha, [...ranks], "gguf"),
    targets: orderTargets(targets),
    layers: layers.size,
    baseModel: baseName,
    bytes,
    dtypes: [...new Set(layout.tensors.map((t) => t.typeName))],
    notes: [],
  };
}

async function inspectPeft(dir: string): Promise<AdapterInspection> {
  const config = await readPeftConfig(dir);
  const path = join(dir, ADAPTER_WEIGHTS_FILE);
  let weights: SafetensorsFile;
  try {
    weights = await SafetensorsFile.open(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new AdapterError(`${dir} has no ${ADAPTER_WEIGHTS_FILE}`);
    throw new AdapterError(err instanceof SafetensorsError ? err.message : `cannot read ${path}: ${(err as Error).message}`);
  }
  await weights.close();
  const ranks = new Set<number>();
  const targets = new Set<string>();
  const layers = new Set<number>();
  const notes: string[] = [];
  for (const [name, t] of weights.tensors) {
    const parsed = parsePeftTensorName(name);
    if (parsed.kind === "refused") {
      notes.push(`cannot be imported: ${parsed.reason}`);
      continue;
    }
    targets.add(parsed.module);
    layers.add(parsed.layer);
    if (parsed.matrix === "A") ranks.add(t.shape[0]!);
  }
  if (Object.keys(config.rankPattern).length) notes.push(`rank_pattern: ${JSON.stringify(config.rankPattern)}`);
  if (Object.keys(config.alphaPattern).length) notes.push(`alpha_pattern: ${JSON.stringify(config.alphaPattern)}`);
  if (typeof config.raw.peft_version === "string") notes.unshift(`saved by PEFT ${config.raw.peft_version}`);
  return {
    format: "PEFT",
    path: dir,
    architecture: undefined,
    ranks: [...ranks].sort((a, b) => a - b),
    alpha: config.alpha,
    scale: describeScale(config.alpha, [config.rank], config.useRslora ? "rslora" : "lora"),
    targets: orderTargets(targets),
    layers: layers.size,
    baseModel: config.baseModelNameOrPath,
    bytes: weights.size,
    dtypes: [...new Set([...weights.tensors.values()].map((t) => t.dtype))],
    notes: notes.slice(0, 8),
  };
}

/** The factor the adapter's update is multiplied by (before LLAMA_LORA_SCALE), in words. */
function describeScale(alpha: number | undefined, ranks: number[], kind: "gguf" | "lora" | "rslora"): string {
  if (alpha === undefined || alpha === 0) return "1 (no alpha: llama.cpp applies the adapter unscaled)";
  const rank = ranks[0];
  if (rank === undefined) return "unknown (no LoRA tensors)";
  const per = (r: number) => (kind === "rslora" ? alpha / Math.sqrt(r) : alpha / r);
  const formula = kind === "rslora" ? "alpha/sqrt(rank), rsLoRA" : "alpha/rank";
  const values = [...new Set(ranks.map((r) => +per(r).toPrecision(6)))];
  return `${values.join(", ")} (${formula})`;
}

function orderTargets(targets: Set<string>): string[] {
  const order = Object.keys(LLAMA_MODULES);
  return [...targets].sort((a, b) => (order.indexOf(a) + 1 || 99) - (order.indexOf(b) + 1 || 99) || a.localeCompare(b));
}

/** The inspection as the lines `friend adapter inspect` prints. */
export function inspectionLines(i: AdapterInspection, formatBytes: (n: number) => string): string[] {
  return [
    `${i.path}: ${i.format === "GGUF" ? `GGUF LoRA adapter${i.architecture ? ` for ${i.architecture}` : ""}` : "PEFT LoRA adapter folder"}`,
    `rank: ${i.ranks.join(", ") || "none"}   alpha: ${i.alpha ?? "none"}   scale: ${i.scale}`,
    `targets: ${i.targets.join(", ") || "none"} on ${i.layers} layer${i.layers === 1 ? "" : "s"}`,
    `base model: ${i.baseModel ?? "not named"}`,
    `size: ${formatBytes(i.bytes)}; dtypes: ${i.dtypes.join(", ")}`,
    ...i.notes.map((n) => `note: ${n}`),
  ];
}
