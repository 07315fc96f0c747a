import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { DurableWrites } from "../../src/conversation/durable.ts";

/** A store whose writes fail while `down`, counting every attempt and keeping what landed, in order. */
function store() {
  const s = { down: false, attempts: 0, landed: [] as string[] };
  const write = (what: string) => () => {
    s.attempts++;
    if (s.down) throw new Error("database is locked");
    s.landed.push(what);
  };
  return { s, write };
}

describe("DurableWrites", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("a flood of writes during an outage tries the store once per retry, not once per write; all land in order once it is back", () => {
    const { s, write } = store();
    const failures: string[] = [];
    let recovered = 0;
    const writes = new DurableWrites({ onFailure: (_err, what) => failures.push(what), onRecovered: () => recovered++, retryMs: 1000 });
    expect(writes.write("w0", write("w0"))).toBe(true);
    s.down = true;
    expect(writes.write("w1", write("w1"))).toBe(false);
    for (let i = 2; i <= 500; i++) expect(writes.write(`w${i}`, write(`w${i}`))).toBe(false);
    expect(s.attempts).toBe(2); // w0, then w1's one failed try: the 499 after it were queued untried
    vi.advanceTimersByTime(3000);
    expect(s.attempts).toBe(5); // one try of the head per second
    expect(failures).toEqual(["w1"]); // logged once per outage
    s.down = false;
    vi.advanceTimersByTime(1000);
    expect(s.landed).toEqual(Array.from({ length: 501 }, (_, i) => `w${i}`));
    expect(writes.waiting).toBe(0);
    expect(recovered).toBe(1);
    // The outage is over: the next write lands at once.
    expect(writes.write("w501", write("w501"))).toBe(true);
    expect(s.landed.at(-1)).toBe("w501");
  });

  it("flush() (the health check, the shutdown) still tries at once during an outage", () => {
    const { s, write } = store();
    const writes = new DurableWrites({ onFailure: () => undefined, retryMs: 1000 });
    s.down = true;
    writes.write("a", write("a"));
    writes.write("b", write("b"));
    s.down = false;
    expect(writes.flush()).toBe(true);
    expect(s.landed).toEqual(["a", "b"]);
    s.down = true;
    writes.write("c", write("c"));
    s.down = false;
    expect(writes.close()).toBe(true);
    expect(s.landed).toEqual(["a", "b", "c"]);
  });
});
