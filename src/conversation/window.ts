import type { WindowSettings } from "../config/settings.ts";
import type { Turn } from "../core/turn.ts";

/**
 * One channel's recent conversation, bounded in turns. When the bound is crossed the oldest turns
 * go in one chunk, down to `trimToFraction` of it, so the prompt's start stays the same for many
 * turns in a row (a local KV cache or a provider's prompt cache stays valid). Fitting the prompt
 * into a model's context is each backend's job, with its own tokenizer.
 */
export class ChannelWindow {
  #turns: Turn[] = [];
  #tokens = 0;

  constructor(
    private readonly limits: Pick<WindowSettings, "maxTurns" | "trimToFraction">,
    initial: readonly Turn[] = [],
  ) {
    this.push(...initial);
  }

  get turns(): readonly Turn[] {
    return this.#turns;
  }

  /** Turns, and their stored cl100k token counts summed (for /status). */
  get size(): { turns: number; tokens: number } {
    return { turns: this.#turns.length, tokens: this.#tokens };
  }

  /** Adds turns (oldest first) and trims; returns how many old turns were dropped. */
  push(...turns: Turn[]): number {
    for (const turn of turns) {
      this.#turns.push(turn);
      this.#tokens += turn.tokens ?? 0;
    }
    const { maxTurns, trimToFraction } = this.limits;
    if (this.#turns.length <= maxTurns) return 0;
    const dropped = this.#turns.splice(0, this.#turns.length - Math.max(1, Math.floor(maxTurns * trimToFraction)));
    for (const turn of dropped) this.#tokens -= turn.tokens ?? 0;
    return dropped.length;
  }

  /**
   * Rewrites turns in place (an edited message) or removes them (`null`: a deleted message, a
   * forgotten user, an expired turn); returns how many changed. Order and bounds are kept.
   */
  rewrite(change: (turn: Turn) => Turn | null): number {
    let changed = 0;
    const kept: Turn[] = [];
    for (const turn of this.#turns) {
      const next = change(turn);
      if (next !== turn) changed++;
      if (next) kept.push(next);
    }
    if (changed === 0) return 0;
    this.#turns = kept;
    this.#tokens = kept.reduce((sum, t) => sum + (t.tokens ?? 0), 0);
    return changed;
  }

  clear(): void {
    this.#turns = [];
    this.#tokens = 0;
  }
}
