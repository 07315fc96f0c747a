import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { terminalMessageIds } from "../../src/chat/terminal.ts";

describe("terminal message ids", () => {
  it("two chats on one channel never make the same id, even for the same line in the same millisecond", () => {
    // Each chat is a separate process: its own pid and random part (the default), its own count.
    const first = terminalMessageIds("cli:shared");
    const second = terminalMessageIds("cli:shared");
    const at = Date.now();
    const ids = [first(at), second(at), first(at), second(at)];
    expect(new Set(ids).size).toBe(4);
    expect(ids[0]).toMatch(new RegExp(`^cli:shared:${process.pid}-[0-9a-f]{8}:${at}:1$`));
  });

  it("ids stay unique across any number of chats and lines at any times", () => {
    fc.assert(
      fc.property(fc.array(fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 20 }), { minLength: 2, maxLength: 8 }), (chats) => {
        const ids = chats.flatMap((times) => {
          const next = terminalMessageIds("cli:shared");
          return times.map((ms) => next(1_700_000_000_000 + ms));
        });
        expect(new Set(ids).size).toBe(ids.length);
      }),
    );
  });
});
