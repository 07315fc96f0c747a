import { describe, expect, it } from "vitest";
import { ChannelWindow } from "../../src/conversation/window.ts";
import type { Turn } from "../../src/core/turn.ts";

const turn = (i: number, tokens = 3): Turn => ({ author: "Alice", text: `message number ${i}`, fromFriend: false, at: i, tokens });

describe("ChannelWindow", () => {
  it("keeps turns in order under the bound, and sums their stored token counts", () => {
    const w = new ChannelWindow({ maxTurns: 10, trimToFraction: 0.5 });
    w.push(turn(1, 3), turn(2, 5), turn(3, 7));
    expect(w.turns.map((t) => t.at)).toEqual([1, 2, 3]);
    expect(w.size).toEqual({ turns: 3, tokens: 15 });
  });

  it("drops the oldest turns in one chunk when the turn bound is crossed", () => {
    const w = new ChannelWindow({ maxTurns: 10, trimToFraction: 0.5 });
    const dropped: number[] = [];
    for (let i = 1; i <= 25; i++) dropped.push(w.push(turn(i)));
    // Turn 11 crosses the bound and trims to 5; the next trim comes only at 11 turns again.
    expect(dropped.filter((d) => d > 0)).toEqual([6, 6, 6]);
    expect(w.turns.map((t) => t.at)).toEqual([19, 20, 21, 22, 23, 24, 25]);
    expect(w.size.tokens).toBe(7 * 3);
  });

  it("trims what it is built from, keeping at least the newest turn", () => {
    const w = new ChannelWindow({ maxTurns: 2, trimToFraction: 0.1 }, [turn(1), turn(2), turn(3)]);
    expect(w.turns.map((t) => t.at)).toEqual([3]);
  });

  it("clear() empties it", () => {
    const w = new ChannelWindow({ maxTurns: 10, trimToFraction: 0.5 }, [turn(1)]);
    w.clear();
    expect(w.size).toEqual({ turns: 0, tokens: 0 });
  });
});
