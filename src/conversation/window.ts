import type { WindowSettings } from "../config/settings.ts";
import { countTokens } from "./tokens.ts";
import type { Turn } from "./turn.ts";

/** Per-turn overhead on top of the text: the speaker label and the message framing. */
const TURN_OVERHEAD_TOKENS = 4;

export function turnTokens(turn: Turn): number {
  return countTokens(turn.author) + countTokens(turn.text) + TURN_OVERHEAD_TOKENS;
}

/**
 * One channel's recent conversation, bounded in turns and in tokens. When a bound is crossed the
 * oldest turns go in one chunk, down to `trimToFraction` of the bound, so the prompt's start stays
 * the same for many turns in a row (a local KV cache or a provider's prompt cache stays valid).
 */
export class ChannelWindow {
  #turns: { turn: Turn; tokens: number }[] = [];
  #tokens = 0;

  constructor(
    private readonly limits: Pick<WindowSettings, "maxTurns" | "maxTokens" | "trimToFraction">,
    initial: readonly Turn[] = [],
  ) {
    for (const turn of initial) this.#append(turn);
    this.#trim();
  }

  get turns(): Turn[] {
    return this.#turns.map((t) => t.turn);
  }

  get size(): { turns: number; tokens: number } {
    return { turns: this.#turns.length, tokens: this.#tokens };
  }

  /** Adds turns (oldest first) and trims; returns how many old turns were dropped. */
  push(...turns: Turn[]): number {
    for (const turn of turns) this.#append(turn);
    return this.#trim();
  }

  clear(): void {
    this.#turns = [];
    this.#tokens = 0;
  }

  #append(turn: Turn): void {
    const tokens = turnTokens(turn);
    this.#turns.push({ turn, tokens });
    this.#tokens += tokens;
  }

  #trim(): number {
    const { maxTurns, maxTokens, trimToFraction } = this.limits;
    if (this.#turns.length <= maxTurns && this.#tokens <= maxTokens) return 0;
    const turnTarget = Math.max(1, Math.floor(maxTurns * trimToFraction));
    const tokenTarget = Math.floor(maxTokens * trimToFraction);
    let drop = 0;
    let tokens = this.#tokens;
    // Always keep the newest turn, even when it alone is over budget: it is what Friend answers.
    while (drop < this.#turns.length - 1 && (this.#turns.length - drop > turnTarget || tokens > tokenTarget)) {
      tokens -= this.#turns[drop]!.tokens;
      drop++;
    }
    this.#turns.splice(0, drop);
    this.#tokens = tokens;
    return drop;
  }
}
