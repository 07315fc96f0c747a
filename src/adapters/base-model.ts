/**
 * The shapes of the model an adapter will run on, read from the GGUF that Friend will load (or,
 * like llama.cpp's converter, from the Hugging Face config.json). The import checks every LoRA
 * tensor against them before it writes anything.
 */
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { DamagedGgufError, NotAFileError, NotGgufError, readGgufFile } from "../gguf/reader.ts";
import { AdapterError } from "./errors.ts";

/** The one architecture whose tensor names and RoPE layout the importer knows. */
export const LLAMA_ARCHITECTURE = "llama";

export interface BaseModelShape {
  /** The file it was read from, for messages. */
  source: string;
  architecture: typeof LLAMA_ARCHITECTURE;
  hiddenSize: number;
  feedForwardSize: number;
  blockCount: number;
  headCount: number;
  headCountKv: number;
  headDim: number;
}

/** Reads a base model's shapes from a GGUF model file or a Hugging Face config.json. */
export async function readBaseModelShape(path: string): Promise<BaseModelShape> {
  if (basename(path).toLowerCase().endsWith(".json")) return shapeFromHfConfig(path);
  let layout;
  try {
    layout = await readGgufFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new AdapterError(`the base model ${path} does not exist`);
    if (err instanceof NotAFileError) throw new AdapterError(`the base model ${path} is not a file: give the GGUF model the adapter will run on, or its config.json`);
    if (err instanceof NotGgufError) throw new AdapterError(`the base model ${path} is not a GGUF file (${err.message}): give the GGUF model the adapter will run on, or its config.json`);
    if (err instanceof DamagedGgufError) throw new AdapterError(`the base model ${path} is damaged or truncated: ${err.message}`);
    throw new AdapterError(`cannot read the base model ${path}: ${(err as Error).message}`);
  }
  return shapeFromGgufMetadata((key) => {
    const kv = layout.kvs.get(key);
    return kv && kv.type !== "array" ? kv.value : undefined;
  }, path);
}

/**
 * The shapes from a GGUF's metadata, however it was read (`lookup` gives a key's value, e.g.
 * "llama.block_count"): from the file, or over the network for a base not downloaded yet.
 */
export function shapeFromGgufMetadata(lookup: (key: string) => unknown, source: string): BaseModelShape {
  const type = lookup("general.type");
  if (type === "adapter") throw new AdapterError(`the base ${source} is itself an adapter (general.type is "adapter"), not a model`);
  const arch = lookup("general.architecture");
  if (arch !== LLAMA_ARCHITECTURE) throw new AdapterError(`the base model ${source} is a ${JSON.stringify(arch ?? null)} model; only Llama models (general.architecture "llama") are supported`);
  const number = (key: string): number | undefined => {
    const v = lookup(`${arch}.${key}`);
    return typeof v === "number" || typeof v === "bigint" ? Number(v) : undefined;
  };
  const need = (key: string): number => {
    const n = number(key);
    if (n === undefined || !Number.isSafeInteger(n) || n <= 0) throw new AdapterError(`the base model ${source} lacks ${arch}.${key}, so its shapes are unknown`);
    return n;
  };
  const hiddenSize = need("embedding_length");
  const headCount = need("attention.head_count");
  return checked({
    source,
    architecture: LLAMA_ARCHITECTURE,
    hiddenSize,
    feedForwardSize: need("feed_forward_length"),
    blockCount: need("block_count"),
    headCount,
    headCountKv: number("attention.head_count_kv") ?? headCount,
    headDim: number("attention.key_length") ?? hiddenSize / headCount,
  });
}

/** The Hugging Face classes llama.cpp converts as "llama" with the same tensor layout. */
const LLAMA_HF_ARCHITECTURES = new Set(["LlamaForCausalLM", "MistralForCausalLM"]);

async function shapeFromHfConfig(path: string): Promise<BaseModelShape> {
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new AdapterError(`the base model config ${path} does not exist`);
    throw new AdapterError(`the base model config ${path} is not readable JSON: ${(err as Error).message}`);
  }
  const architectures = Array.isArray(config.architectures) ? (config.architectures as unknown[]) : [];
  if (!architectures.some((a) => typeof a === "string" && LLAMA_HF_ARCHITECTURES.has(a))) {
    throw new AdapterError(`the base model config ${path} is not a Llama model's (architectures ${JSON.stringify(config.architectures ?? null)}, model_type ${JSON.stringify(config.model_type ?? null)}); only Llama models (LlamaForCausalLM) are supported`);
  }
  const need = (key: string): number => {
    const n = config[key];
    if (!Number.isSafeInteger(n) || (n as number) <= 0) throw new AdapterError(`the base model config ${path} lacks ${key}`);
    return n as number;
  };
  const hiddenSize = need("hidden_size");
  const headCount = need("num_attention_heads");
  const optional = (key: string, fallback: number): number => (config[key] === undefined || config[key] === null ? fallback : need(key));
  return checked({
    source: path,
    architecture: LLAMA_ARCHITECTURE,
    hiddenSize,
    feedForwardSize: need("intermediate_size"),
    blockCount: need("num_hidden_layers"),
    headCount,
    headCountKv: optional("num_key_value_heads", headCount),
    headDim: optional("head_dim", hiddenSize / headCount),
  });
}

function checked(shape: BaseModelShape): BaseModelShape {
  if (!Number.isSafeInteger(shape.headDim) || shape.headDim % 2 !== 0) throw new AdapterError(`the base model ${shape.source} has a head size of ${shape.headDim}, not an even whole number`);
  if (shape.headCount % shape.headCountKv !== 0) throw new AdapterError(`the base model ${shape.source} has ${shape.headCount} heads, not a multiple of its ${shape.headCountKv} key/value heads`);
  return shape;
}
