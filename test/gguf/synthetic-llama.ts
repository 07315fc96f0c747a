/**
 * A synthetic Llama GGUF with realistic shapes and random F16 or Q8_0 weights, plus a random LoRA
 * adapter on q/k/v/o, for the benchmark (bench/local.ts). The text it writes is nonsense; what it
 * costs to run is what a real model of the same shapes and weight type costs.
 *
 * `TINYLLAMA_SHAPE` is TinyLlama-1.1B: 22 layers, width 2048, FFN 5632, 32 heads with 4 KV heads
 * (grouped-query attention), 32000 tokens: about 2.2 GB as F16.
 */
import { GgufWriter, type GgmlTypeName } from "../../src/gguf/writer.ts";

/** Weight types for the matrices (norms stay F32, as in llama.cpp's own files). */
export type SyntheticWeightType = Extract<GgmlTypeName, "f16" | "q8_0">;
/** GGUF `general.file_type` (llama.cpp's `llama_ftype`) for each weight type. */
const FILE_TYPE: Record<SyntheticWeightType, number> = { f16: 1, q8_0: 7 };

export interface LlamaShape {
  embedding: number;
  feedForward: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  contextLength: number;
}

export const TINYLLAMA_SHAPE: LlamaShape = {
  embedding: 2048,
  feedForward: 5632,
  layers: 22,
  heads: 32,
  kvHeads: 4,
  vocab: 32000,
  contextLength: 2048,
};

/** xorshift32: fast, seedable, good enough for weights nobody reads. */
function uniform(seed: number, scale: number): (chunk: Float32Array, start: number) => void {
  let s = seed >>> 0 || 1;
  return (chunk) => {
    for (let i = 0; i < chunk.length; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      chunk[i] = ((s >>> 0) / 4294967296 - 0.5) * 2 * scale;
    }
  };
}

/**
 * A SentencePiece vocab of the given size: specials, the 256 byte tokens, then lowercase letter
 * pieces (1 to 3 letters, with and without the "▁" word start) so that English-ish text
 * tokenizes at roughly Llama-2's few characters per token.
 */
function syntheticVocab(size: number): { tokens: string[]; types: number[]; scores: number[] } {
  const tokens = ["<unk>", "<s>", "</s>"];
  const types = [2, 3, 3];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    types.push(6);
  }
  const letters = "abcdefghijklmnopqrstuvwxyz".split("");
  const pieces = ["\u2581", ...letters];
  const pairs = letters.flatMap((a) => letters.map((b) => a + b));
  const triples = pairs.flatMap((p) => letters.map((l) => p + l));
  pieces.push(...letters.map((l) => `\u2581${l}`), ...pairs, ...pairs.map((p) => `\u2581${p}`));
  pieces.push(...triples.flatMap((t) => [`\u2581${t}`, t]));
  for (const p of pieces) {
    if (tokens.length >= size) break;
    tokens.push(p);
    types.push(1);
  }
  for (let i = 0; tokens.length < size; i++) {
    tokens.push(`<extra_${i}>`);
    types.push(1);
  }
  return { tokens, types, scores: tokens.map((t, i) => (types[i] === 1 ? t.length : 0)) };
}

/**
 * Writes the synthetic model; returns the file size in bytes. The same seeds give the same weights
 * in either type; another `firstSeed` gives a model of the same layout and size with other weights.
 */
export function writeSyntheticLlama(path: string, shape: LlamaShape = TINYLLAMA_SHAPE, weights: SyntheticWeightType = "f16", firstSeed = 1): number {
  const { embedding: E, feedForward: FF, vocab: V } = shape;
  const headDim = E / shape.heads;
  const kvDim = headDim * shape.kvHeads;
  const vocab = syntheticVocab(V);
  const gguf = new GgufWriter();
  gguf.string("general.architecture", "llama");
  gguf.string("general.name", "friend-synthetic-tinyllama");
  gguf.u32("general.file_type", FILE_TYPE[weights]);
  gguf.u32("llama.context_length", shape.contextLength);
  gguf.u32("llama.embedding_length", E);
  gguf.u32("llama.block_count", shape.layers);
  gguf.u32("llama.feed_forward_length", FF);
  gguf.u32("llama.attention.head_count", shape.heads);
  gguf.u32("llama.attention.head_count_kv", shape.kvHeads);
  gguf.f32("llama.attention.layer_norm_rms_epsilon", 1e-5);
  gguf.u32("llama.rope.dimension_count", headDim);
  gguf.f32("llama.rope.freq_base", 10000);
  gguf.string("tokenizer.ggml.model", "llama");
  gguf.array("tokenizer.ggml.tokens", "string", vocab.tokens);
  gguf.array("tokenizer.ggml.scores", "f32", vocab.scores);
  gguf.array("tokenizer.ggml.token_type", "i32", vocab.types);
  gguf.u32("tokenizer.ggml.bos_token_id", 1);
  gguf.u32("tokenizer.ggml.eos_token_id", 2);
  gguf.u32("tokenizer.ggml.unknown_token_id", 0);
  gguf.bool("tokenizer.ggml.add_bos_token", true);

  let seed = firstSeed;
  const random = (fanIn: number, gain = 1) => uniform(seed++, gain / Math.sqrt(fanIn));
  // The projections back into the residual stream are scaled by 1/√(2·layers), as GPT-2 initialises
  // them. Without it the residual grows layer by layer until F16 activations run into slow
  // denormal and overflow arithmetic: 22 layers generated at 1.3 tokens/s instead of 13 here.
  const residual = 1 / Math.sqrt(2 * shape.layers);
  const ones = new Float32Array(E).fill(1);
  gguf.tensor("token_embd.weight", [E, V], weights, random(1));
  gguf.tensor("output_norm.weight", [E], "f32", ones);
  gguf.tensor("output.weight", [E, V], weights, random(E));
  for (let l = 0; l < shape.layers; l++) {
    const blk = `blk.${l}`;
    gguf.tensor(`${blk}.attn_norm.weight`, [E], "f32", ones);
    gguf.tensor(`${blk}.attn_q.weight`, [E, E], weights, random(E));
    gguf.tensor(`${blk}.attn_k.weight`, [E, kvDim], weights, random(E));
    gguf.tensor(`${blk}.attn_v.weight`, [E, kvDim], weights, random(E));
    gguf.tensor(`${blk}.attn_output.weight`, [E, E], weights, random(E, residual));
    gguf.tensor(`${blk}.ffn_norm.weight`, [E], "f32", ones);
    gguf.tensor(`${blk}.ffn_gate.weight`, [E, FF], weights, random(E));
    gguf.tensor(`${blk}.ffn_up.weight`, [E, FF], weights, random(E));
    gguf.tensor(`${blk}.ffn_down.weight`, [FF, E], weights, random(FF, residual));
  }
  return gguf.write(path);
}

/**
 * Writes a LoRA adapter of the given rank on every layer's q/k/v/o, as the Friends adapter was
 * trained (PEFT r 16, alpha 16, target q/k/v/o). Returns the file size in bytes.
 */
export function writeSyntheticLora(path: string, shape: LlamaShape = TINYLLAMA_SHAPE, rank = 16, firstSeed = 1000): number {
  const E = shape.embedding;
  const kvDim = (E / shape.heads) * shape.kvHeads;
  const gguf = new GgufWriter();
  gguf.string("general.type", "adapter");
  gguf.string("general.architecture", "llama");
  gguf.string("general.name", "friend-synthetic-lora");
  gguf.string("adapter.type", "lora");
  gguf.f32("adapter.lora.alpha", rank);
  let seed = firstSeed;
  for (let l = 0; l < shape.layers; l++) {
    for (const [name, out] of [["attn_q", E], ["attn_k", kvDim], ["attn_v", kvDim], ["attn_output", E]] as const) {
      gguf.tensor(`blk.${l}.${name}.weight.lora_a`, [E, rank], "f16", uniform(seed++, 1 / Math.sqrt(E)));
      gguf.tensor(`blk.${l}.${name}.weight.lora_b`, [rank, out], "f16", uniform(seed++, 0.01));
    }
  }
  return gguf.write(path);
}
