import type { Turn } from "../core/turn.ts";

/** A rendered prompt: anything whose length is its size in tokens (the tokens themselves, or just a count). */
export type Sized = { readonly length: number };

export interface PromptFitInput<P extends Sized> {
  /** The channel window, oldest first; the last turn is the one being answered. */
  turns: readonly Turn[];
  /** `at` of the oldest turn in the prompt the sequence already holds, if it holds one. */
  firstTurnAt?: number;
  /** Most prompt tokens that fit in the sequence next to the reply. */
  budget: number;
  /** After a trim the prompt uses at most this fraction of the budget, leaving room for many turns. */
  trimToFraction: number;
  /** Renders and tokenizes (or just measures) a prompt made of these turns. */
  encode(turns: readonly Turn[]): P;
}

export interface PromptFit<P extends Sized> {
  /** Index in `turns` of the oldest turn rendered. */
  start: number;
  tokens: P;
  /** True when old turns were dropped on this call (the cache is rebuilt once). */
  trimmed: boolean;
}

/**
 * Picks the turns to render so the prompt fits the sequence while staying a prefix of the cached
 * one. It starts where the previous prompt started; when that no longer fits, it drops old turns
 * in one large chunk (down to `trimToFraction` of the budget), so the next many turns reuse the
 * cache again instead of re-evaluating the whole prompt every time one turn is dropped.
 * Returns null when even the newest turn alone does not fit.
 */
export function fitPrompt<P extends Sized>(input: PromptFitInput<P>): PromptFit<P> | null {
  const { turns, budget, encode } = input;
  const last = turns.length - 1;
  let start = 0;
  if (input.firstTurnAt !== undefined) {
    const at = input.firstTurnAt;
    const found = turns.findIndex((t) => t.at >= at);
    start = found === -1 ? last : found;
  }
  let tokens = encode(turns.slice(start));
  if (tokens.length <= budget) return { start, tokens, trimmed: false };

  const target = Math.floor(budget * input.trimToFraction);
  while (start < last) {
    start++;
    tokens = encode(turns.slice(start));
    if (tokens.length <= target) break;
  }
  return tokens.length <= budget ? { start, tokens, trimmed: true } : null;
}
