import type { TiktokenBPE } from "js-tiktoken/lite";
import { BpeTokenCounter } from "../../core/bpe.ts";
import { FINETUNE_MODELS, type FinetuneModel } from "../openai-models.ts";
import type { ExchangePair } from "./pairs.ts";

/** One line of OpenAI chat fine-tuning JSONL. */
export interface TrainingExample {
  messages: { role: "system" | "user" | "assistant"; content: string }[];
}

export function trainingExampleFor(pair: ExchangePair, systemPrompt: string): TrainingExample {
  return {
    messages: [
      { role: "system", content: systemPrompt },
      { role: "user", content: pair.user },
      { role: "assistant", content: pair.assistant },
    ],
  };
}

const ALLOWED_ROLES = new Set(["system", "user", "assistant", "function"]);
const ALLOWED_KEYS = new Set(["role", "content", "name", "function_call", "weight"]);
/** OpenAI's rule for a message's `name`. */
const MESSAGE_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

export type ExampleCheck = { ok: true; tokens: number } | { ok: false; reason: string };

/** Counts an example's tokens the way OpenAI bills them, for one model's tokenizer. */
export interface ExampleTokenizer {
  model: FinetuneModel;
  countText(text: string): number;
}

/** Bounds the per-tokenizer memo; repeated texts are found again long before it fills. */
const TOKEN_CACHE_SIZE = 10_000;

/** Each encoding's ranks are megabytes of JavaScript: load only the one a model needs, when it is needed. */
const RANKS: Record<(typeof FINETUNE_MODELS)[FinetuneModel]["encoding"], () => Promise<TiktokenBPE>> = {
  cl100k_base: async () => (await import("js-tiktoken/ranks/cl100k_base")).default,
  o200k_base: async () => (await import("js-tiktoken/ranks/o200k_base")).default,
};
const encodings = new Map<string, Promise<BpeTokenCounter>>();

export async function loadExampleTokenizer(model: FinetuneModel): Promise<ExampleTokenizer> {
  const name = FINETUNE_MODELS[model].encoding;
  let encoding = encodings.get(name);
  if (!encoding) {
    encoding = RANKS[name]().then((ranks) => new BpeTokenCounter(ranks));
    encodings.set(name, encoding);
  }
  const loaded = await encoding;
  // Every example repeats the system prompt and the role names: count each distinct text once.
  const counted = new Map<string, number>();
  const countText = (text: string) => {
    let tokens = counted.get(text);
    if (tokens === undefined) {
      // Special-token text such as "<|endoftext|>" in a line of dialogue is counted as plain text.
      tokens = loaded.count(text);
      if (counted.size >= TOKEN_CACHE_SIZE) counted.clear();
      counted.set(text, tokens);
    }
    return tokens;
  };
  return { model, countText };
}

/**
 * Checks one parsed JSONL line the way OpenAI's fine-tuning validation does, and counts its tokens.
 * The first problem found is the reason; a file passes only when every line does.
 */
export function checkTrainingExample(value: unknown, tokenizer: ExampleTokenizer): ExampleCheck {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return reject("not a JSON object");
  const messages = (value as { messages?: unknown }).messages;
  if (messages === undefined) return reject("no `messages` list");
  if (!Array.isArray(messages)) return reject("`messages` is not a list");
  if (messages.length === 0) return reject("`messages` is empty");

  for (const [i, message] of messages.entries()) {
    const where = `message ${i + 1}`;
    if (typeof message !== "object" || message === null || Array.isArray(message)) return reject(`${where} is not an object`);
    const unknownKey = Object.keys(message).find((key) => !ALLOWED_KEYS.has(key));
    if (unknownKey !== undefined) return reject(`${where} has a key OpenAI does not allow: "${unknownKey}"`);
    const { role, content, name, weight } = message as Record<string, unknown>;
    if (typeof role !== "string" || !ALLOWED_ROLES.has(role)) return reject(`${where} has role ${JSON.stringify(role)}; allowed: system, user, assistant, function`);
    if (typeof content !== "string" || content.trim() === "") return reject(`${where} needs non-empty string content`);
    if (name !== undefined && (typeof name !== "string" || !MESSAGE_NAME.test(name))) return reject(`${where} has a name that is not 1-64 of a-z A-Z 0-9 _ -`);
    if (weight !== undefined && weight !== 0 && weight !== 1) return reject(`${where} has weight ${JSON.stringify(weight)}; it must be 0 or 1`);
  }
  if (!messages.some((m) => (m as { role?: unknown }).role === "assistant")) return reject("no assistant message");

  const tokens = countExampleTokens(messages as Record<string, unknown>[], tokenizer);
  const limit = FINETUNE_MODELS[tokenizer.model].exampleTokenLimit;
  if (tokens > limit) return reject(`${tokens} tokens, over the ${limit}-token limit for ${tokenizer.model}`);
  return { ok: true, tokens };
}

/** OpenAI cookbook count: 3 tokens per message, 1 more per name, 3 to prime the reply. */
export function countExampleTokens(messages: readonly Record<string, unknown>[], tokenizer: ExampleTokenizer): number {
  let tokens = 3;
  for (const message of messages) {
    tokens += 3;
    for (const [key, value] of Object.entries(message)) {
      if (key === "weight") continue;
      tokens += tokenizer.countText(typeof value === "string" ? value : JSON.stringify(value));
      if (key === "name") tokens += 1;
    }
  }
  return tokens;
}

export interface CheckedLine {
  /** 1-based line number in the file. */
  line: number;
  check: ExampleCheck;
}

/** Checks every line of a JSONL training file; a trailing newline is not an empty line. */
export function checkTrainingJsonl(text: string, tokenizer: ExampleTokenizer): CheckedLine[] {
  const lines = text.split(/\r?\n/);
  if (lines.at(-1) === "") lines.pop();
  return lines.map((raw, i) => {
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      return { line: i + 1, check: reject(raw.trim() ? "not valid JSON" : "empty line") };
    }
    return { line: i + 1, check: checkTrainingExample(value, tokenizer) };
  });
}

function reject(reason: string): ExampleCheck {
  return { ok: false, reason };
}
