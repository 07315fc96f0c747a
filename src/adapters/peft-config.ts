/**
 * A PEFT LoRA adapter's `adapter_config.json`: what `save_pretrained` writes, read and checked.
 * Everything that llama.cpp's LoRA format cannot express is refused here, naming the field.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { AdapterError } from "./errors.ts";

export const ADAPTER_CONFIG_FILE = "adapter_config.json";
export const ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors";

export interface PeftLoraConfig {
  rank: number;
  alpha: number;
  /** rsLoRA scales by alpha/sqrt(rank) instead of alpha/rank. */
  useRslora: boolean;
  /** Per-module rank and alpha, keyed by PEFT's patterns (a module name or a regular expression). */
  rankPattern: Record<string, number>;
  alphaPattern: Record<string, number>;
  /** As written: a list of module names, or a regular expression string. */
  targetModules: string[] | string;
  baseModelNameOrPath: string | undefined;
  /** The whole file, for `friend adapter inspect`. */
  raw: Record<string, unknown>;
}

/** Reads and checks `dir/adapter_config.json`. */
export async function readPeftConfig(dir: string): Promise<PeftLoraConfig> {
  const path = join(dir, ADAPTER_CONFIG_FILE);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new AdapterError(`${dir} has no ${ADAPTER_CONFIG_FILE}: give the folder PEFT's save_pretrained wrote (adapter_config.json and adapter_model.safetensors)`);
    if (code === "ENOTDIR") throw new AdapterError(`${dir} is a file, not a PEFT adapter folder (adapter_config.json and adapter_model.safetensors)`);
    throw new AdapterError(`cannot read ${path}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new AdapterError(`${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new AdapterError(`${path} is not a JSON object`);
  return parsePeftConfig(raw as Record<string, unknown>, path);
}

/** Checks a parsed adapter_config.json; `path` names it in errors. */
export function parsePeftConfig(raw: Record<string, unknown>, path: string): PeftLoraConfig {
  const refuse = (why: string): never => {
    throw new AdapterError(`${path}: ${why}`);
  };
  const peftType = raw.peft_type;
  if (peftType !== "LORA") refuse(`peft_type is ${JSON.stringify(peftType)}; only LoRA adapters (LORA) can be converted for llama.cpp`);
  if (raw.use_dora === true) refuse("use_dora is true: a DoRA adapter has magnitude vectors that llama.cpp's LoRA format cannot hold; train with use_dora=False");
  if (nonEmpty(raw.modules_to_save)) refuse(`modules_to_save is ${JSON.stringify(raw.modules_to_save)}: fully trained copies of modules cannot be put in a llama.cpp LoRA adapter; train without modules_to_save`);
  if (nonEmpty(raw.trainable_token_indices)) refuse("trainable_token_indices is set: trained token embeddings cannot be put in a llama.cpp LoRA adapter");
  if (raw.bias !== undefined && raw.bias !== "none") refuse(`bias is ${JSON.stringify(raw.bias)}: trained biases cannot be put in a llama.cpp LoRA adapter; train with bias="none"`);
  if (raw.lora_bias === true) refuse("lora_bias is true: LoRA bias vectors cannot be put in a llama.cpp LoRA adapter");
  if (raw.fan_in_fan_out === true) refuse("fan_in_fan_out is true: that layout (GPT-2's Conv1D) is not a Llama model's");
  if (nonEmpty(raw.layer_replication)) refuse("layer_replication is set: the adapter's layers no longer match the base model's");
  if (raw.use_qalora === true) refuse("use_qalora is true: QA-LoRA adapters are not plain LoRA");
  if (nonEmpty(raw.alora_invocation_tokens) || nonEmpty(raw.invocation_string)) refuse("this is an activated LoRA (aLoRA); Friend imports plain LoRA adapters only");
  if (nonEmpty(raw.target_parameters)) refuse("target_parameters is set: LoRA on raw parameters (not modules) cannot be converted");
  const rank = raw.r;
  if (!isPositiveInteger(rank)) refuse(`r is ${JSON.stringify(rank)}, not a positive whole number`);
  const alpha = raw.lora_alpha;
  if (typeof alpha !== "number" || !Number.isFinite(alpha) || alpha <= 0) {
    refuse(`lora_alpha is ${JSON.stringify(alpha)}; it must be a positive number (llama.cpp reads an alpha of 0 as "no scaling")`);
  }
  const rankPattern = numberMap(raw.rank_pattern, "rank_pattern", refuse, isPositiveInteger);
  const alphaPattern = numberMap(raw.alpha_pattern, "alpha_pattern", refuse, (n) => typeof n === "number" && Number.isFinite(n) && n > 0);
  const targets = raw.target_modules;
  if (!(typeof targets === "string" || (Array.isArray(targets) && targets.every((t) => typeof t === "string")))) {
    refuse(`target_modules is ${JSON.stringify(targets)}, not a list of module names`);
  }
  const base = raw.base_model_name_or_path;
  return {
    rank: rank as number,
    alpha: alpha as number,
    useRslora: raw.use_rslora === true,
    rankPattern,
    alphaPattern,
    targetModules: targets as string[] | string,
    baseModelNameOrPath: typeof base === "string" && base !== "" ? base : undefined,
    raw,
  };
}

function nonEmpty(value: unknown): boolean {
  if (value === undefined || value === null || value === false) return false;
  if (Array.isArray(value)) return value.length > 0;
  if (typeof value === "object") return Object.keys(value).length > 0;
  return value !== "";
}

function isPositiveInteger(n: unknown): n is number {
  return Number.isSafeInteger(n) && (n as number) > 0;
}

function numberMap(value: unknown, field: string, refuse: (why: string) => never, valid: (n: unknown) => boolean): Record<string, number> {
  if (value === undefined || value === null) return {};
  if (typeof value !== "object" || Array.isArray(value)) return refuse(`${field} is not a map of module patterns to numbers`);
  for (const [key, n] of Object.entries(value)) if (!valid(n)) refuse(`${field} gives ${JSON.stringify(key)} the value ${JSON.stringify(n)}`);
  return value as Record<string, number>;
}

/**
 * The pattern that applies to `moduleName` (e.g. "model.layers.3.self_attn.q_proj"), as PEFT's
 * `get_pattern_key` finds it: an exact name, else the first key that matches the name's end
 * at a dot boundary as a regular expression.
 */
export function patternFor(patterns: Record<string, number>, moduleName: string): number | undefined {
  const keys = Object.keys(patterns);
  const exact = keys.find((k) => k === moduleName);
  if (exact !== undefined) return patterns[exact];
  for (const key of keys) {
    let matches: boolean;
    try {
      matches = new RegExp(`^(?:.*\\.)?(?:${key})$`).test(moduleName);
    } catch {
      matches = moduleName === key || moduleName.endsWith(`.${key}`);
    }
    if (matches) return patterns[key];
  }
  return undefined;
}
