import type { LlamaModel, Token } from "node-llama-cpp";

/** The most byte tokens one character needs (UTF-8 is at most 4 bytes). */
const MAX_PARTIAL_TOKENS = 3;

/**
 * Turns sampled tokens into streamed text, as node-llama-cpp's LlamaCompletion does: each token
 * is detokenized after the reply's earlier tokens (so word-initial spaces come out right), and a
 * token that ends inside a multi-byte character waits for the rest of it instead of showing "�".
 */
export class TokenText {
  private readonly done: Token[] = [];
  private partial: Token[] = [];

  constructor(private readonly model: Pick<LlamaModel, "detokenize" | "isSpecialToken">) {}

  /** The text `token` adds, or "" while it waits for the rest of a character. */
  push(token: Token): string {
    const tokens = [...this.partial, token];
    const text = this.model.detokenize(tokens, false, this.done);
    if (text.endsWith("\uFFFD") && !this.model.isSpecialToken(token) && this.partial.length < MAX_PARTIAL_TOKENS) {
      this.partial = tokens;
      return "";
    }
    this.partial = [];
    this.done.push(...tokens);
    return text;
  }
}
