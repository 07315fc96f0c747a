import { getEncoding, type Tiktoken } from "js-tiktoken";

let encoding: Tiktoken | undefined;

/**
 * Token count with OpenAI's cl100k_base encoding. The window uses it as its budget for both
 * backends; the local backend enforces its own context with the model's tokenizer on top.
 */
export function countTokens(text: string): number {
  encoding ??= getEncoding("cl100k_base");
  return encoding.encode(text, [], []).length;
}
