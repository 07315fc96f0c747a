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
