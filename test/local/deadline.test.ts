/** withDeadline: gives up on time, tells the work to stop, and frees what arrives too late. */
import { describe, expect, it } from "vitest";
import { withDeadline } from "../../src/backends/local/deadline.ts";

/** A promise the test settles by hand: the stand-in for a llama.cpp load that ignores its signal. */
function controllable<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

const timeoutError = () => new Error("too slow");

describe("withDeadline", () => {
  it("passes the value through when the work finishes in time, and frees nothing", async () => {
    const late: string[] = [];
    await expect(withDeadline(async () => "model", { ms: 10_000, timeoutError, onLate: (v) => void late.push(v) })).resolves.toBe("model");
    expect(late).toEqual([]);
  });

  it("passes a failure through", async () => {
    await expect(withDeadline(() => Promise.reject(new Error("bad file")), { ms: 10_000, timeoutError, onLate: () => {} })).rejects.toThrow("bad file");
  });

  it("rejects at the deadline without waiting, aborts the work's signal, and frees a value that arrives later", async () => {
    const work = controllable<string>();
    let signal: AbortSignal | undefined;
    const freed: string[] = [];
    let onFreed!: () => void;
    const wasFreed = new Promise<void>((resolve) => (onFreed = resolve));
    const result = withDeadline(
      (s) => {
        signal = s;
        return work.promise;
      },
      { ms: 1, timeoutError, onLate: (v) => (freed.push(v), onFreed()) },
    );
    await expect(result).rejects.toThrow("too slow");
    expect(signal!.aborted).toBe(true);
    expect((signal!.reason as Error).message).toBe("too slow");
    expect(freed).toEqual([]);
    work.resolve("late model");
    await wasFreed;
    expect(freed).toEqual(["late model"]);
  });

  it("drops a rejection that arrives after the deadline", async () => {
    const work = controllable<string>();
    const freed: string[] = [];
    await expect(withDeadline(() => work.promise, { ms: 1, timeoutError, onLate: (v) => void freed.push(v) })).rejects.toThrow("too slow");
    work.reject(new Error("aborted by the signal"));
    await new Promise((r) => setImmediate(r));
    expect(freed).toEqual([]);
  });

  it("gives up at once when the outer signal aborts (the backend closing), with its reason", async () => {
    const work = controllable<string>();
    const closing = new AbortController();
    let signal: AbortSignal | undefined;
    const result = withDeadline(
      (s) => {
        signal = s;
        return work.promise;
      },
      { ms: 10_000, signal: closing.signal, timeoutError, onLate: () => {} },
    );
    closing.abort(new Error("closing"));
    await expect(result).rejects.toThrow("closing");
    expect(signal!.aborted).toBe(true);
  });

  it("does not start work when the outer signal has already aborted", async () => {
    const closing = new AbortController();
    closing.abort(new Error("closed"));
    let started = false;
    await expect(withDeadline(async () => (started = true), { ms: 10_000, signal: closing.signal, timeoutError, onLate: () => {} })).rejects.toThrow("closed");
    expect(started).toBe(false);
  });

  it("a synchronous throw from the work is a rejection", async () => {
    await expect(
      withDeadline(
        () => {
          throw new Error("sync");
        },
        { ms: 10_000, timeoutError, onLate: () => {} },
      ),
    ).rejects.toThrow("sync");
  });
});
