/**
 * Tiny GGUF models and LoRA adapters with hand-set weights, for tests that run real llama.cpp
 * inference through node-llama-cpp without downloading anything.
 *
 * The script model ("Friend tiny script"):
 * - Llama architecture, one layer, embedding width 64, a SentencePiece ("llama") vocab with
 *   `<unk>`, `<s>`, `</s>`, the byte tokens `<0x00>`…`<0xFF>`, `▁`, and the words of the script
 *   below as single tokens (with every prefix, so SentencePiece's pairwise merges can reach them).
 *   Anything else falls back to byte tokens, as in Llama-2.
 * - Attention and FFN outputs are zero, so each position's hidden state is its token's one-hot
 *   embedding, and `output.weight` is a next-token table: greedy output depends only on the
 *   current token. Logits are strong (48 against 0), so even temperature 0.8 follows it.
 * - After a prompt ending in `Friend:` it says
 *       ` Oh, I don't know.\nRoss: (entering) Hey Ben!\nRoss: (entering) Hey Ben!\n…`
 *   forever (no end-of-sequence token): the hallucinated follow-on speaker that Friend's stop
 *   triggers and reply cleaner must cut, leaving exactly `Oh, I don't know.`.
 *   The persona name and the follow-on speaker are options (`Gunther` tests the generic
 *   `\n<Capitalised name>:` path, as it is in no stop list).
 * - Any token outside the script predicts `</s>`.
 *
 * The adapter: a rank-1 LoRA on `output.weight` that redirects one transition, ` Hey` → ` Rachel`
 * instead of ` Ben`, at scale 1 (at scale 0 it is the base model). So with the adapter the script
 * reads `… (entering) Hey Rachel!`.
 *
 * Bad files for the error paths: an adapter for another architecture, an adapter whose shapes
 * belong to a wider model, an adapter for a tensor the model lacks, and a file that is not GGUF.
 *
 * Start with `writeTinyModelSet(dir)`, which writes every file and returns their paths.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GgufWriter } from "../../src/gguf/writer.ts";

/** What the script model's greedy continuation of `Friend:` looks like, as raw model text. */
export const TINY_REPLY = "Oh, I don't know.";
export function tinyHallucination(followOnSpeaker = "Ross", greeted = "Ben"): string {
  return `${TINY_REPLY}\n${followOnSpeaker}: (entering) Hey ${greeted}!`;
}

export interface TinyScriptOptions {
  /** The label the prompt ends with, without the colon. Default "Friend". */
  personaName?: string;
  /** The speaker the model invents after Friend's line. Default "Ross". */
  followOnSpeaker?: string;
  /** Bytes of filler metadata (a string key llama.cpp ignores), for a file big enough to download in several chunks. */
  paddingBytes?: number;
  /**
   * Unused tokens added after the script's (ids unchanged; they never win), for a vocabulary the
   * size of a real model's, where each output row llama.cpp copies or samples is as long.
   */
  unusedTokens?: number;
}

/** Options of the script model alone (adapters are always F32). */
export interface TinyModelOptions extends TinyScriptOptions {
  /** Type of the weight matrices: F32 (default), or F16 / Q8_0 to check those encodings in llama.cpp. */
  weights?: "f32" | "f16" | "q8_0";
}

const EMBEDDING = 64;
const FEED_FORWARD = 64;
const CONTEXT_LENGTH = 4096;
/** Next-token weight; after RMS norm a one-hot state is scaled by √64 = 8, so logits are about 8×this. */
const TABLE_WEIGHT = 6;

const SPACE = "\u2581"; // SentencePiece's "▁", which stands for a space

/** The vocabulary and next-token table shared by the model and its adapters (ids must agree). */
interface Design {
  tokens: string[];
  types: number[];
  scores: number[];
  /** token id → hidden-state dimension; 0 is "any other token". */
  stateOf: Map<number, number>;
  /** state dimension → next token id. */
  next: Map<number, number>;
  id(piece: string): number;
}

const UNK = 0;
const BOS = 1;
const EOS = 2;
const TOKEN_NORMAL = 1;
const TOKEN_UNKNOWN = 2;
const TOKEN_CONTROL = 3;
const TOKEN_UNUSED = 5;
const TOKEN_BYTE = 6;

function byteToken(byte: number): string {
  return `<0x${byte.toString(16).toUpperCase().padStart(2, "0")}>`;
}

function design(options: TinyScriptOptions = {}): Design {
  const persona = options.personaName ?? "Friend";
  const speaker = options.followOnSpeaker ?? "Ross";
  // The script as tokens. A leading "▁" is a space; "\n" is the byte token <0x0A>, as in Llama-2.
  const script = [
    `${persona}:`, `${SPACE}Oh`, ",", `${SPACE}I`, `${SPACE}don't`, `${SPACE}know`, ".", "\n",
    `${speaker}:`, `${SPACE}(`, "entering", ")", `${SPACE}Hey`, `${SPACE}Ben`, "!",
  ];
  const extraWords = [`${SPACE}Rachel`];

  const tokens = ["<unk>", "<s>", "</s>"];
  const types = [TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_CONTROL];
  for (let b = 0; b < 256; b++) {
    tokens.push(byteToken(b));
    types.push(TOKEN_BYTE);
  }
  const index = new Map<string, number>();
  const add = (piece: string): void => {
    if (index.has(piece)) return;
    index.set(piece, tokens.length);
    tokens.push(piece);
    types.push(TOKEN_NORMAL);
  };
  add(SPACE);
  for (const word of [...script, ...extraWords]) {
    if (word === "\n") continue;
    // SentencePiece merges pairs of pieces that are in the vocab, so every prefix must be one.
    for (let end = 2; end <= word.length; end++) add(word.slice(0, end));
    if (word.length === 1) add(word);
  }
  for (let u = 0; u < (options.unusedTokens ?? 0); u++) {
    tokens.push(`<unused${u}>`);
    types.push(TOKEN_UNUSED);
  }
  // Longer pieces score higher, so merges run to the whole word.
  const scores = tokens.map((t, i) => (types[i] === TOKEN_NORMAL ? t.length : 0));

  const id = (piece: string): number => {
    const found = piece === "\n" ? 3 + 0x0a : index.get(piece);
    if (found === undefined) throw new Error(`tiny model: no token for ${JSON.stringify(piece)}`);
    return found;
  };

  const stateOf = new Map<number, number>();
  const next = new Map<number, number>([[0, EOS]]);
  const chain = [...script, "\n"]; // "!" → "\n" closes the loop back to the follow-on speaker
  for (let i = 0; i < script.length; i++) {
    const current = id(chain[i]!);
    if (!stateOf.has(current)) stateOf.set(current, stateOf.size + 1);
    const state = stateOf.get(current)!;
    if (!next.has(state)) next.set(state, id(chain[i + 1]!));
  }
  // ` Rachel` appears only through the adapter; it goes on like ` Ben`.
  const rachel = id(`${SPACE}Rachel`);
  stateOf.set(rachel, stateOf.size + 1);
  next.set(stateOf.get(rachel)!, id("!"));
  if (stateOf.size + 1 > EMBEDDING) throw new Error("tiny model: script longer than the embedding width");
  return { tokens, types, scores, stateOf, next, id };
}

function llamaHeader(gguf: GgufWriter, name: string, embedding: number): void {
  gguf.string("general.architecture", "llama");
  gguf.string("general.name", name);
  gguf.u32("llama.context_length", CONTEXT_LENGTH);
  gguf.u32("llama.embedding_length", embedding);
  gguf.u32("llama.block_count", 1);
  gguf.u32("llama.feed_forward_length", FEED_FORWARD);
  gguf.u32("llama.attention.head_count", 1);
  gguf.u32("llama.attention.head_count_kv", 1);
  gguf.f32("llama.attention.layer_norm_rms_epsilon", 1e-5);
  gguf.u32("llama.rope.dimension_count", embedding);
}

/** Writes the script model (see the top of this file). */
export function writeTinyScriptModel(path: string, options: TinyModelOptions = {}): void {
  const d = design(options);
  const V = d.tokens.length;
  const E = EMBEDDING;
  const gguf = new GgufWriter();
  llamaHeader(gguf, "friend-tiny-script", E);
  if (options.paddingBytes) gguf.string("friend.test.padding", "-".repeat(options.paddingBytes));
  gguf.string("tokenizer.ggml.model", "llama");
  gguf.array("tokenizer.ggml.tokens", "string", d.tokens);
  gguf.array("tokenizer.ggml.scores", "f32", d.scores);
  gguf.array("tokenizer.ggml.token_type", "i32", d.types);
  gguf.u32("tokenizer.ggml.bos_token_id", BOS);
  gguf.u32("tokenizer.ggml.eos_token_id", EOS);
  gguf.u32("tokenizer.ggml.unknown_token_id", UNK);
  gguf.bool("tokenizer.ggml.add_bos_token", true);
  gguf.bool("tokenizer.ggml.add_eos_token", false);

  const embeddings = new Float32Array(V * E); // ne [E, V]: one row of E per token
  for (let t = 0; t < V; t++) embeddings[t * E + (d.stateOf.get(t) ?? 0)] = 1;
  const output = new Float32Array(V * E); // ne [E, V]: row `next`, column `state`
  for (const [state, nextToken] of d.next) output[nextToken * E + state] = TABLE_WEIGHT;

  const w = options.weights ?? "f32";
  const ones = new Float32Array(E).fill(1);
  gguf.tensor("token_embd.weight", [E, V], w, embeddings);
  gguf.tensor("output_norm.weight", [E], "f32", ones);
  gguf.tensor("output.weight", [E, V], w, output);
  // Zero attention and FFN outputs: the residual stream stays the token's own embedding.
  gguf.tensor("blk.0.attn_norm.weight", [E], "f32", ones);
  for (const name of ["attn_q", "attn_k", "attn_v", "attn_output"]) {
    gguf.tensor(`blk.0.${name}.weight`, [E, E], w, new Float32Array(E * E));
  }
  gguf.tensor("blk.0.ffn_norm.weight", [E], "f32", ones);
  gguf.tensor("blk.0.ffn_gate.weight", [E, FEED_FORWARD], w, new Float32Array(E * FEED_FORWARD));
  gguf.tensor("blk.0.ffn_up.weight", [E, FEED_FORWARD], w, new Float32Array(E * FEED_FORWARD));
  gguf.tensor("blk.0.ffn_down.weight", [FEED_FORWARD, E], w, new Float32Array(FEED_FORWARD * E));
  gguf.write(path);
}

export interface TinyAdapterOptions extends TinyScriptOptions {
  /** Make the adapter wrong on purpose, for the error tests. */
  defect?: "architecture" | "shape" | "unknown-tensor";
}

/**
 * Writes the rank-1 LoRA adapter that turns ` Hey Ben` into ` Hey Rachel` (see the top of this
 * file), or a defective one. `options` must match the model's.
 */
export function writeTinyLoraAdapter(path: string, options: TinyAdapterOptions = {}): void {
  const d = design(options);
  const V = d.tokens.length;
  // A "shape" defect is an adapter trained for a model twice as wide.
  const E = options.defect === "shape" ? EMBEDDING * 2 : EMBEDDING;
  const rank = 1;
  const gguf = new GgufWriter();
  gguf.string("general.type", "adapter");
  gguf.string("general.architecture", options.defect === "architecture" ? "gpt2" : "llama");
  gguf.string("general.name", "friend-tiny-lora");
  gguf.string("adapter.type", "lora");
  gguf.f32("adapter.lora.alpha", rank); // applied scale = scale × alpha / rank = scale

  // ΔW = B·A: A (ne [E, r]) picks the ` Hey` state; B (ne [r, V]) moves its logits from Ben to Rachel.
  const heyState = d.stateOf.get(d.id(`${SPACE}Hey`))!;
  const a = new Float32Array(rank * E);
  a[heyState] = 1;
  const b = new Float32Array(V * rank);
  b[d.id(`${SPACE}Ben`)] = -2 * TABLE_WEIGHT;
  b[d.id(`${SPACE}Rachel`)] = 2 * TABLE_WEIGHT;
  const target = options.defect === "unknown-tensor" ? "blk.7.attn_q.weight" : "output.weight";
  gguf.tensor(`${target}.lora_a`, [E, rank], "f32", a);
  gguf.tensor(`${target}.lora_b`, [rank, V], "f32", b);
  gguf.write(path);
}

/** A file with a .gguf name that is not GGUF at all (here: a safetensors-looking header). */
export function writeNotGgufFile(path: string): void {
  writeFileSync(path, Buffer.concat([Buffer.from([0x10, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{"__metadata__":{}}')]));
}

/** Paths of every tiny file, written by `writeTinyModelSet`. */
export interface TinyModelSet {
  dir: string;
  /** The script model, persona "Friend", follow-on speaker "Ross". */
  model: string;
  /** The good adapter for `model`: ` Hey Ben` → ` Hey Rachel`. */
  adapter: string;
  /** The script model with follow-on speaker "Gunther" (in no stop list, not in the main cast). */
  guntherModel: string;
  wrongArchitectureAdapter: string;
  wrongShapeAdapter: string;
  unknownTensorAdapter: string;
  notGguf: string;
  /** A path where no file exists. */
  missing: string;
}

/**
 * Writes every tiny model and adapter into `dir` (default: a fresh directory under the OS temp
 * dir). Takes a few milliseconds; the files are about 100 KB each.
 */
export function writeTinyModelSet(dir?: string): TinyModelSet {
  const root = dir ?? mkdtempSync(join(tmpdir(), "friend-tiny-"));
  mkdirSync(root, { recursive: true });
  const set: TinyModelSet = {
    dir: root,
    model: join(root, "tiny-script.gguf"),
    adapter: join(root, "tiny-lora.gguf"),
    guntherModel: join(root, "tiny-script-gunther.gguf"),
    wrongArchitectureAdapter: join(root, "lora-wrong-architecture.gguf"),
    wrongShapeAdapter: join(root, "lora-wrong-shape.gguf"),
    unknownTensorAdapter: join(root, "lora-unknown-tensor.gguf"),
    notGguf: join(root, "not-a-model.gguf"),
    missing: join(root, "no-such-model.gguf"),
  };
  writeTinyScriptModel(set.model);
  writeTinyLoraAdapter(set.adapter);
  writeTinyScriptModel(set.guntherModel, { followOnSpeaker: "Gunther" });
  writeTinyLoraAdapter(set.wrongArchitectureAdapter, { defect: "architecture" });
  writeTinyLoraAdapter(set.wrongShapeAdapter, { defect: "shape" });
  writeTinyLoraAdapter(set.unknownTensorAdapter, { defect: "unknown-tensor" });
  writeNotGgufFile(set.notGguf);
  return set;
}
