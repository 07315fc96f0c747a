import { fileURLToPath } from "node:url";
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
