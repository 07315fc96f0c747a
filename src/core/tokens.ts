import cl100kBase from "js-tiktoken/ranks/cl100k_base";
import { BpeTokenCounter } from "./bpe.ts";

let cl100k: BpeTokenCounter | undefined;

/**
 * Token count with OpenAI's cl100k_base encoding, exact and in O(n log n) for any text (see
 * BpeTokenCounter). Each turn is counted once and the count stored with it; the OpenAI backend fits
 * its prompt by these counts (the local backend uses the model's own tokenizer).
 */
export function countTokens(text: string): number {
  cl100k ??= new BpeTokenCounter(cl100kBase);
  return cl100k.count(text);
}

/**
 * The longest prefix of `text` (cut at a code point, never inside a surrogate pair) of at most
 * `maxTokens` cl100k tokens; `text` itself when it fits. A binary search over the prefix length,
 * each step a linear count.
 */
export function truncateToTokens(text: string, maxTokens: number): string {
  if (countTokens(text) <= maxTokens) return text;
  let lo = 0;
  let hi = text.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (countTokens(text.slice(0, cutAt(text, mid))) <= maxTokens) lo = mid;
    else hi = mid - 1;
  }
  return text.slice(0, cutAt(text, lo));
}

/** `end`, moved back by one when it would split a surrogate pair. */
function cutAt(text: string, end: number): number {
  const code = text.charCodeAt(end - 1);
  return end > 0 && code >= 0xd800 && code <= 0xdbff ? end - 1 : end;
}
