import { describe, expect, it } from "vitest";
import { ChannelSlots } from "../../src/backends/local/channel-slots.ts";

describe("ChannelSlots", () => {
  it("gives a channel the same sequence back, not reassigned", async () => {
    const slots = new ChannelSlots(["s1", "s2"]);
    const a = await slots.acquire("A");
    expect(a.reassigned).toBe(true); // an empty sequence still needs clearing once
    a.release();
    const again = await slots.acquire("A");
    expect(again.slot.sequence).toBe(a.slot.sequence);
    expect(again.reassigned).toBe(false);
  });

  it("takes the least recently used idle sequence when channels outnumber sequences", async () => {
    const slots = new ChannelSlots(["s1", "s2"]);
    (await slots.acquire("A")).release();
    (await slots.acquire("B")).release();
    (await slots.acquire("A")).release(); // A is now more recent than B
    const c = await slots.acquire("C");
    expect(c.reassigned).toBe(true);
    expect(c.slot.sequence).toBe("s2");
    c.release();
    expect(slots.owners()).toEqual(["A", "C"]);
  });

  it("never takes a busy sequence: the newcomer waits for a release", async () => {
    const slots = new ChannelSlots(["s1"]);
    const a = await slots.acquire("A");
    let got: string | undefined;
    const b = slots.acquire("B").then((lease) => {
      got = lease.slot.sequence;
      return lease;
    });
    await Promise.resolve();
    expect(got).toBeUndefined();
    a.release();
    expect((await b).reassigned).toBe(true);
    expect(got).toBe("s1");
  });

  it("runs one generation per channel at a time", async () => {
    const slots = new ChannelSlots(["s1", "s2"]);
    const first = await slots.acquire("A");
    let second = false;
    const pending = slots.acquire("A").then((l) => ((second = true), l));
    await new Promise((r) => setTimeout(r, 5));
    expect(second).toBe(false);
    first.release();
    const lease = await pending;
    expect(lease.slot.sequence).toBe(first.slot.sequence);
    expect(lease.reassigned).toBe(false);
  });

  it("stops waiting when the signal aborts", async () => {
    const slots = new ChannelSlots(["s1"]);
    await slots.acquire("A");
    const controller = new AbortController();
    const waiting = slots.acquire("B", controller.signal);
    controller.abort(new Error("gave up"));
    await expect(waiting).rejects.toThrow("gave up");
  });

  it("forget() makes the next use of the channel start from a cleared sequence", async () => {
    const slots = new ChannelSlots(["s1", "s2"]);
    const a = await slots.acquire("A");
    a.slot.firstTurnAt = 5;
    a.release();
    slots.forget("A");
    const again = await slots.acquire("A");
    expect(again.reassigned).toBe(true);
    expect(again.slot.firstTurnAt).toBeUndefined();
  });

  it("forget() during a generation lets it finish, then frees the sequence", async () => {
    const slots = new ChannelSlots(["s1"]);
    const a = await slots.acquire("A");
    slots.forget("A");
    let next: string | undefined;
    const b = slots.acquire("A").then((l) => ((next = l.slot.sequence), l));
    await Promise.resolve();
    expect(next).toBeUndefined(); // still busy with the first generation
    a.release();
    expect((await b).reassigned).toBe(true);
  });

  it("a lease released twice counts once", async () => {
    const slots = new ChannelSlots(["s1"]);
    const a = await slots.acquire("A");
    a.release();
    const b = await slots.acquire("B");
    a.release(); // must not free B's lease
    let c = false;
    void slots.acquire("C").then(() => (c = true));
    await new Promise((r) => setTimeout(r, 5));
    expect(c).toBe(false);
    b.release();
  });
});

describe("ChannelSlots: which sequence is given up", () => {
  // Each sequence's cost to rebuild, e.g. its tokens not saved on disk.
  const costs = new Map<string, number>();
  const slotsWithCosts = (names: string[]) => new ChannelSlots(names, (slot) => costs.get(slot.sequence) ?? 0);

  it.each([
    ["the cheapest, even when used more recently", { s1: 900, s2: 30 }, "s2"],
    ["the least recently used among equal costs", { s1: 50, s2: 50 }, "s1"],
    ["one whose state is saved in full (cost 0) before any unsaved one", { s1: 400, s2: 0 }, "s2"],
  ] as const)("%s", async (_name, cost, taken) => {
    for (const [k, v] of Object.entries(cost)) costs.set(k, v);
    const slots = slotsWithCosts(["s1", "s2"]);
    (await slots.acquire("A")).release(); // s1, least recently used
    (await slots.acquire("B")).release(); // s2
    const c = await slots.acquire("C");
    expect(c.slot.sequence).toBe(taken);
    // The lease names whose state it took, so it can be saved before the sequence is cleared.
    expect(c.evicted?.channelId).toBe(taken === "s1" ? "A" : "B");
  });

  it("a sequence nobody holds is taken first, and its lease names no evicted channel", async () => {
    costs.set("s1", 5).set("s2", 5);
    const slots = slotsWithCosts(["s1", "s2"]);
    (await slots.acquire("A")).release();
    const b = await slots.acquire("B");
    expect(b.slot.sequence).toBe("s2");
    expect(b.evicted).toBeUndefined();
  });

  it("acquireOwn waits for the channel's own busy sequence, and gives null to a channel that holds none", async () => {
    const slots = new ChannelSlots(["s1", "s2"]);
    const a = await slots.acquire("A");
    (await slots.acquire("B")).release();
    expect(slots.holders()).toEqual(["B", "A"]); // the idle first
    const own = slots.acquireOwn("A");
    let settled = false;
    void own.then(() => (settled = true));
    await Promise.resolve();
    expect(settled).toBe(false);
    a.release();
    expect((await own)?.slot.sequence).toBe("s1");
    expect(await slots.acquireOwn("nobody")).toBeNull();
  });
});
