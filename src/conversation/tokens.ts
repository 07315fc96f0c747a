import cl100kBase from "js-tiktoken/ranks/cl100k_base";
import { BpeTokenCounter } from "./bpe.ts";

let cl100k: BpeTokenCounter | undefined;

/**
 * Token count with OpenAI's cl100k_base encoding. The window uses it as its budget for both
 * backends; the local backend enforces its own context with the model's tokenizer on top.
 * Linear-time for any text (see BpeTokenCounter).
 */
export function countTokens(text: string): number {
  cl100k ??= new BpeTokenCounter(cl100kBase);
  return cl100k.count(text);
}
