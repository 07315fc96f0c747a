import { describe, expect, it } from "vitest";
import { ChannelWindow, turnTokens } from "../../src/conversation/window.ts";
import type { Turn } from "../../src/conversation/turn.ts";

const turn = (i: number, text = `message number ${i}`): Turn => ({ author: "Alice", text, fromFriend: false, at: i });

describe("ChannelWindow", () => {
  it("keeps turns in order under the bounds", () => {
    const w = new ChannelWindow({ maxTurns: 10, maxTokens: 1000, trimToFraction: 0.5 });
    w.push(turn(1), turn(2), turn(3));
    expect(w.turns.map((t) => t.at)).toEqual([1, 2, 3]);
    expect(w.size.turns).toBe(3);
    expect(w.size.tokens).toBe([1, 2, 3].reduce((n, i) => n + turnTokens(turn(i)), 0));
  });

  it("drops the oldest turns in one chunk when the turn bound is crossed", () => {
    const w = new ChannelWindow({ maxTurns: 10, maxTokens: 100_000, trimToFraction: 0.5 });
    const dropped: number[] = [];
    for (let i = 1; i <= 25; i++) dropped.push(w.push(turn(i)));
    // Turn 11 crosses the bound and trims to 5; the next trim comes only at 11 turns again.
    expect(dropped.filter((d) => d > 0)).toEqual([6, 6, 6]);
    expect(w.turns.map((t) => t.at)).toEqual([19, 20, 21, 22, 23, 24, 25]);
  });

  it("enforces the token bound", () => {
    const w = new ChannelWindow({ maxTurns: 1000, maxTokens: 100, trimToFraction: 0.5 });
    for (let i = 1; i <= 50; i++) {
      w.push(turn(i));
      expect(w.size.tokens).toBeLessThanOrEqual(100);
    }
    expect(w.turns.at(-1)!.at).toBe(50);
  });

  it("keeps the newest turn even when it alone is over budget", () => {
    const w = new ChannelWindow({ maxTurns: 10, maxTokens: 64, trimToFraction: 0.5 });
    w.push(turn(1), turn(2, "word ".repeat(500)));
    expect(w.turns.map((t) => t.at)).toEqual([2]);
  });

  it("clear() empties it", () => {
    const w = new ChannelWindow({ maxTurns: 10, maxTokens: 1000, trimToFraction: 0.5 }, [turn(1)]);
    w.clear();
    expect(w.size).toEqual({ turns: 0, tokens: 0 });
  });
});
