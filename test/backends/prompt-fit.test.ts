import { describe, expect, it } from "vitest";
import { fitPrompt } from "../../src/backends/prompt-fit.ts";
import type { Turn } from "../../src/core/turn.ts";

const turns = (n: number): Turn[] => Array.from({ length: n }, (_, i) => ({ author: "A", text: "x", fromFriend: false, at: 100 + i }));
/** Each turn costs 10 tokens, plus a 5-token preamble. */
const encode = (ts: readonly Turn[]): number[] => Array.from({ length: 5 + ts.length * 10 }, (_, i) => i);

describe("fitPrompt", () => {
  it("renders the whole window when it fits", () => {
    const fit = fitPrompt({ turns: turns(4), budget: 100, trimToFraction: 0.5, encode });
    expect(fit).toMatchObject({ start: 0, trimmed: false });
    expect(fit?.tokens).toHaveLength(45);
  });

  it("drops old turns in one chunk down to the fraction of the budget", () => {
    const fit = fitPrompt({ turns: turns(12), budget: 100, trimToFraction: 0.5, encode });
    // 12 turns = 125 tokens > 100; down to ≤ 50 tokens: 4 turns (45), so 8 dropped at once.
    expect(fit).toMatchObject({ start: 8, trimmed: true });
    expect(fit?.tokens).toHaveLength(45);
  });

  it("keeps the previous start while it fits, so the prompt stays a prefix of the cached one", () => {
    const window = turns(9);
    // The window itself still holds turn 0, but the cache starts at turn 6 (at 106).
    const fit = fitPrompt({ turns: window, firstTurnAt: 106, budget: 100, trimToFraction: 0.5, encode });
    expect(fit).toMatchObject({ start: 6, trimmed: false });
  });

  it("starts at the window's oldest turn when the window already dropped the cached start", () => {
    const window = turns(9).slice(3);
    const fit = fitPrompt({ turns: window, firstTurnAt: 101, budget: 100, trimToFraction: 0.5, encode });
    expect(fit).toMatchObject({ start: 0, trimmed: false });
  });

  it("over many turns, trims rarely and in large steps", () => {
    let firstTurnAt: number | undefined;
    const starts: number[] = [];
    const all = turns(60);
    for (let n = 1; n <= all.length; n++) {
      const fit = fitPrompt({ turns: all.slice(0, n), firstTurnAt, budget: 100, trimToFraction: 0.5, encode })!;
      firstTurnAt = all[fit.start]!.at;
      starts.push(fit.start);
    }
    const changes = starts.filter((s, i) => i > 0 && s !== starts[i - 1]);
    expect(changes.length).toBeLessThanOrEqual(10); // one per ~5 new turns, not one per turn
    for (let i = 1; i < starts.length; i++) expect(starts[i]! - starts[i - 1]!).not.toBe(1);
  });

  it("keeps at least the newest turn, and gives up when even that does not fit", () => {
    expect(fitPrompt({ turns: turns(3), budget: 15, trimToFraction: 0.5, encode })).toMatchObject({ start: 2, trimmed: true });
    expect(fitPrompt({ turns: turns(3), budget: 14, trimToFraction: 0.5, encode })).toBeNull();
  });
});
