import { writeFileSync } from "node:fs";

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

  const out = new GgufWriter();
  out.header(0, 14);
  out.kvString("general.architecture", "llama");
  out.kvU32("llama.context_length", 128);
  out.kvU32("llama.embedding_length", 8);
  out.kvU32("llama.block_count", 1);
  out.kvU32("llama.feed_forward_length", 16);
  out.kvU32("llama.attention.head_count", 1);
  out.kvF32("llama.attention.layer_norm_rms_epsilon", 1e-5);
  out.kvU32("llama.rope.dimension_count", 8);
  out.kvString("tokenizer.ggml.model", "llama");
  out.kvStringArray("tokenizer.ggml.tokens", tokens);
  out.kvF32Array("tokenizer.ggml.scores", scores);
  out.kvI32Array("tokenizer.ggml.token_type", types);
  out.kvU32("tokenizer.ggml.bos_token_id", 1);
  out.kvU32("tokenizer.ggml.eos_token_id", 2);
  writeFileSync(path, out.bytes());
}

const GGUF_U32 = 4;
const GGUF_I32 = 5;
const GGUF_F32 = 6;
const GGUF_STRING = 8;
const GGUF_ARRAY = 9;

class GgufWriter {
  private readonly parts: Buffer[] = [];

  header(tensorCount: number, kvCount: number): void {
    this.raw(Buffer.from("GGUF"));
    this.u32(3);
    this.u64(tensorCount);
    this.u64(kvCount);
  }
  kvU32(key: string, value: number): void {
    this.string(key);
    this.u32(GGUF_U32);
    this.u32(value);
  }
  kvF32(key: string, value: number): void {
    this.string(key);
    this.u32(GGUF_F32);
    const b = Buffer.alloc(4);
    b.writeFloatLE(value);
    this.raw(b);
  }
  kvString(key: string, value: string): void {
    this.string(key);
    this.u32(GGUF_STRING);
    this.string(value);
  }
  kvStringArray(key: string, values: readonly string[]): void {
    this.arrayHeader(key, GGUF_STRING, values.length);
    for (const v of values) this.string(v);
  }
  kvF32Array(key: string, values: readonly number[]): void {
    this.arrayHeader(key, GGUF_F32, values.length);
    for (const v of values) {
      const b = Buffer.alloc(4);
      b.writeFloatLE(v);
      this.raw(b);
    }
  }
  kvI32Array(key: string, values: readonly number[]): void {
    this.arrayHeader(key, GGUF_I32, values.length);
    for (const v of values) {
      const b = Buffer.alloc(4);
      b.writeInt32LE(v);
      this.raw(b);
    }
  }
  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
  private arrayHeader(key: string, elementType: number, count: number): void {
    this.string(key);
    this.u32(GGUF_ARRAY);
    this.u32(elementType);
    this.u64(count);
  }
  private string(s: string): void {
    const b = Buffer.from(s, "utf8");
    this.u64(b.length);
    this.raw(b);
  }
  private u32(n: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    this.raw(b);
  }
  private u64(n: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(n));
    this.raw(b);
  }
  private raw(b: Buffer): void {
    this.parts.push(b);
  }
}
