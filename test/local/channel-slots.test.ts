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
