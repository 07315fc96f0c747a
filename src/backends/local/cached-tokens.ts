/**
 * Keeps the model's own tokens for text the sequence already holds. A channel's next prompt is
 * rendered from text, and the previous reply in it is tokenized afresh; the tokens the model
 * sampled for that reply are often a different split of the same text (` don` `'` `t` for
 * ` don't`), and llama.cpp's cache is matched by token, so the whole reply was evaluated again
 * each turn. Here the prompt reuses the cached tokens as far as they spell the same text, and only
 * the text after them is tokenized.
 */
export interface TokenCodec<T> {
  /** Text of `tokens` as it reads after `before` (word-initial spaces depend on what precedes). */
  detokenize(tokens: readonly T[], before: readonly T[]): string;
  /** Tokens for `text` that continues other text (no word-start space is added in front). */
  tokenizeContinuation(text: string): readonly T[];
}

/**
 * The prompt to evaluate: `fresh` (the prompt tokenized from its text), or the same text spelled
 * with the longest run of `cached` tokens it can reuse followed by the rest tokenized. Falls back
 * to `fresh` whenever the spliced tokens would not spell exactly the same text.
 */
export function reuseCachedTokens<T>(cached: readonly T[], fresh: readonly T[], codec: TokenCodec<T>): readonly T[] {
  let common = 0;
  while (common < cached.length && common < fresh.length && cached[common] === fresh[common]) common++;
  if (common === cached.length || common === fresh.length) return fresh;

  const before = fresh.slice(0, common);
  const freshText = codec.detokenize(fresh.slice(common), before);
  // The longest run of cached tokens after the common prefix whose text starts the fresh text.
  let reuse = common;
  let reusedText = "";
  for (let end = common + 1; end <= cached.length; end++) {
    const text = codec.detokenize(cached.slice(common, end), before);
    // A token that ends inside a character: judge it with the next one.
    if (text.endsWith("\uFFFD")) continue;
    if (!freshText.startsWith(text)) break;
    reuse = end;
    reusedText = text;
  }
  if (reuse === common) return fresh;

  const rest = freshText.slice(reusedText.length);
  const spliced = [...cached.slice(0, reuse), ...(rest ? codec.tokenizeContinuation(rest) : [])];
  const same = codec.detokenize(spliced.slice(common), before) === freshText;
  return same ? spliced : fresh;
}
