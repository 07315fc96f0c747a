import { describe, expect, it } from "vitest";
import { FloodGate } from "../../src/conversation/flood.ts";

describe("FloodGate", () => {
  it("allows up to the limit per minute, warns once, then ignores until the window passes", () => {
    const gate = new FloodGate(3);
    const t0 = 1_000_000;
    expect([0, 1, 2].map((i) => gate.check("u", t0 + i))).toEqual(["allow", "allow", "allow"]);
    expect(gate.check("u", t0 + 3)).toBe("warn");
    expect(gate.check("u", t0 + 4)).toBe("ignore");
    expect(gate.check("u", t0 + 30_000)).toBe("ignore");
    // The first message leaves the window a minute after it was sent.
    expect(gate.check("u", t0 + 60_000)).toBe("allow");
    expect(gate.check("u", t0 + 60_001)).toBe("allow");
    expect(gate.check("u", t0 + 60_002)).toBe("allow");
    expect(gate.check("u", t0 + 60_003)).toBe("warn");
  });

  it("keeps users apart", () => {
    const gate = new FloodGate(1);
    expect(gate.check("a", 0)).toBe("allow");
    expect(gate.check("a", 1)).toBe("warn");
    expect(gate.check("b", 2)).toBe("allow");
  });

  it("forgets quiet users, so memory stays bounded", () => {
    const gate = new FloodGate(5);
    for (let i = 0; i < 1000; i++) gate.check(`user${i}`, 1000 + i);
    expect(gate.trackedUsers).toBe(1000);
    gate.check("late", 1000 + 2 * 60_000);
    expect(gate.trackedUsers).toBe(1);
  });
});
