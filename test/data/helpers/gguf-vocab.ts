import { GgufWriter } from "../../../src/gguf/writer.ts";

/**
 * Writes a vocab-only Llama GGUF (no tensors): enough for node-llama-cpp to load with
 * `vocabOnly: true` and tokenize, so the chunk builder's exact-token path runs on a real tokenizer.
 */
export function writeVocabOnlyGguf(path: string, pieces: readonly string[]): void {
  const tokens = ["<unk>", "<s>", "</s>"];
  const types = [2, 3, 3];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    types.push(6);
  }
  // llama.cpp's SentencePiece merges symbol pairs only into pieces that exist, so every prefix must too.
  const vocabulary = new Set(pieces.flatMap((piece) => [...piece].map((_, i) => [...piece].slice(0, i + 1).join(""))));
  for (const piece of vocabulary) {
    tokens.push(piece);
    types.push(1);
  }
  // SentencePiece prefers higher scores when merging; longer pieces win.
  const scores = tokens.map((t, i) => (types[i] === 1 ? t.length : 0));

  new GgufWriter()
    .string("general.architecture", "llama")
    .u32("llama.context_length", 128)
    .u32("llama.embedding_length", 8)
    .u32("llama.block_count", 1)
    .u32("llama.feed_forward_length", 16)
    .u32("llama.attention.head_count", 1)
    .f32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    .u32("llama.rope.dimension_count", 8)
    .string("tokenizer.ggml.model", "llama")
    .array("tokenizer.ggml.tokens", "string", tokens)
    .array("tokenizer.ggml.scores", "f32", scores)
    .array("tokenizer.ggml.token_type", "i32", types)
    .u32("tokenizer.ggml.bos_token_id", 1)
    .u32("tokenizer.ggml.eos_token_id", 2)
    .write(path);
}
