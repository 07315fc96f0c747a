import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { terminalMessageIds, terminalMessagePid } from "../../src/chat/terminal.ts";

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

  it("name the chat process that made them, and nothing else does", () => {
    const next = terminalMessageIds("cli:shared");
    expect(terminalMessagePid("cli:shared", next(Date.now()))).toBe(process.pid);
    expect(terminalMessagePid("cli:shared", terminalMessageIds("cli:shared", "4242-0badf00d")(1))).toBe(4242);
    for (const other of ["cli:other:1-ab:1:1", "cli:shared:1-ab:1", "1234567890", "cli:shared:x-ab:1:1", "cli:shared:1-ab:1:1:extra", "cli:sharedx:1-ab:1:1"]) {
      expect(terminalMessagePid("cli:shared", other)).toBeUndefined();
    }
    fc.assert(
      fc.property(fc.stringMatching(/^[\w.-]{1,64}$/), fc.integer({ min: 1, max: 2 ** 22 }), fc.nat(), (name, pid, at) => {
        const channel = `cli:${name}`;
        expect(terminalMessagePid(channel, terminalMessageIds(channel, `${pid}-deadbeef`)(at))).toBe(pid);
      }),
    );
  });
});
