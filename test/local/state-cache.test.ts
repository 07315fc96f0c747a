/**
 * StateCache on its own, with states written as plain bytes: keys, atomic writes, damaged files,
 * the disk budget and the order of saves and drops. The states llama.cpp writes are covered by
 * test/local/saved-state.test.ts.
 */
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { dropSavedStates, keyId, StateCache, type StateKey } from "../../src/backends/local/state-cache.ts";

const root = mkdtempSync(join(tmpdir(), "friend-state-cache-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;
const freshDir = () => join(root, `cache-${dirs++}`);
const log = pino({ enabled: false });

const KEY: StateKey = { model: "1000:aa", adapter: { file: "10:bb", scale: 1 }, contextSize: 512, kvCacheType: "f16", binary: "prebuilt (cpu); ggml-org/llama.cpp@b1" };
const open = (dir: string, key: StateKey = KEY, budgetBytes = 1 << 20) => StateCache.open({ dir, budgetBytes, key, log });
const bytesOf = (n: number, fill = 7) => async (path: string) => writeFileSync(path, Buffer.alloc(n, fill));

/** Finds and verifies a channel's state as the generator does; the state's bytes, or undefined. */
async function load(cache: StateCache, channelId: string): Promise<Buffer | undefined> {
  const record = await cache.find(channelId);
  const path = record && (await cache.verify(record));
  return path ? readFileSync(path) : undefined;
}

describe("keys", () => {
  it.each([
    ["another model", { model: "1000:ab" }],
    ["another adapter", { adapter: { file: "10:bc", scale: 1 } }],
    ["no adapter", { adapter: null }],
    ["another adapter scale", { adapter: { file: "10:bb", scale: 0.5 } }],
    ["another context size", { contextSize: 1024 }],
    ["another KV cache type", { kvCacheType: "q8_0" }],
    ["another llama.cpp binary", { binary: "native build (cpu, GGML_NATIVE=ON); ggml-org/llama.cpp@b1" }],
    ["another llama.cpp release", { binary: "prebuilt (cpu); ggml-org/llama.cpp@b2" }],
  ] as const)("a state saved under one key is not offered under %s", async (_name, change) => {
    const dir = freshDir();
    const first = await open(dir);
    expect(await first.save("c1", { tokens: [1, 2, 3] }, bytesOf(100))).toBe(100);
    const other = await open(dir, { ...KEY, ...change });
    expect(keyId({ ...KEY, ...change })).not.toBe(keyId(KEY));
    expect(await other.find("c1")).toBeUndefined();
    // …and under the key it was written with, it is.
    expect(await load(await open(dir), "c1")).toEqual(Buffer.alloc(100, 7));
  });

  it("the key's field order does not matter", () => {
    const reordered = { binary: KEY.binary, kvCacheType: KEY.kvCacheType, contextSize: KEY.contextSize, adapter: { scale: 1, file: "10:bb" }, model: KEY.model };
    expect(keyId(reordered)).toBe(keyId(KEY));
  });
});

describe("damaged files are never offered", () => {
  const damage: Array<[string, (state: string, record: string) => void]> = [
    ["a truncated state", (state) => truncateSync(state, 50)],
    ["a state with bytes appended", (state) => appendFileSync(state, "x")],
    ["a state with one byte changed", (state) => {
      const bytes = readFileSync(state);
      bytes[10]! ^= 1;
      writeFileSync(state, bytes);
    }],
    ["a missing state", (state) => rmSync(state)],
    ["a torn record", (_state, record) => writeFileSync(record, readFileSync(record, "utf8").slice(0, 20))],
    ["a record of another format", (_state, record) => writeFileSync(record, JSON.stringify({ ...JSON.parse(readFileSync(record, "utf8")), format: 99 }))],
  ];
  it.each(damage)("%s: ignored and deleted", async (name, spoil) => {
    const dir = freshDir();
    const cache = await open(dir);
    await cache.save("c1", { tokens: [1, 2, 3] }, bytesOf(100));
    const keyDir = join(dir, keyId(KEY));
    const record = readdirSync(keyDir).find((f) => f.endsWith(".json"))!;
    spoil(join(keyDir, record.replace(".json", ".state")), join(keyDir, record));
    // A damaged state is refused by the process that saved it (its record is in memory) and after a
    // restart; a damaged record only matters after a restart, when it is read.
    if (!name.includes("record")) expect(await load(cache, "c1")).toBeUndefined();
    expect(await load(await open(dir), "c1")).toBeUndefined();
    expect(readdirSync(keyDir)).toEqual([]);
  });

  it("random damage to a state is caught whatever it is (size or checksum)", async () => {
    const dir = freshDir();
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.nat(), async (bytes, at) => {
        const cache = await open(dir);
        await cache.save("c1", { tokens: [1] }, async (path) => writeFileSync(path, bytes));
        const state = join(dir, keyId(KEY), readdirSync(join(dir, keyId(KEY))).find((f) => f.endsWith(".state"))!);
        const spoilt = Buffer.from(bytes);
        spoilt[at % spoilt.length]! ^= 0xff;
        writeFileSync(state, spoilt);
        expect(await load(await open(dir), "c1")).toBeUndefined();
      }),
      { numRuns: 30 },
    );
  });

  it("temporary files left by a crash are deleted at the next start; a state without a record is too", async () => {
    const dir = freshDir();
    const cache = await open(dir);
    await cache.save("c1", { tokens: [1] }, bytesOf(10));
    const keyDir = join(dir, keyId(KEY));
    writeFileSync(join(keyDir, "0123.state.abcd.tmp"), "half a state");
    writeFileSync(join(keyDir, "4567.state"), "a state whose record never landed");
    await open(dir);
    expect(readdirSync(keyDir).sort()).toEqual(readdirSync(keyDir).filter((f) => !f.includes("tmp") && !f.startsWith("4567")).sort());
    expect(readdirSync(keyDir)).toHaveLength(2);
  });

  it("a write that fails leaves nothing behind and the old state in place", async () => {
    const dir = freshDir();
    const cache = await open(dir);
    await cache.save("c1", { tokens: [1] }, bytesOf(10, 1));
    const failed = await cache.save("c1", { tokens: [1, 2] }, async (path) => {
      writeFileSync(path, "partial");
      throw new Error("disk full");
    });
    expect(failed).toBeUndefined();
    expect(await load(cache, "c1")).toEqual(Buffer.alloc(10, 1));
    expect(readdirSync(join(dir, keyId(KEY))).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });
});

describe("the disk budget", () => {
  it("drops the least recently used states first, across keys, and counts what is kept", async () => {
    const dir = freshDir();
    const old = await StateCache.open({ dir, budgetBytes: 350, key: { ...KEY, model: "old" }, log });
    await old.save("stale", { tokens: [1] }, bytesOf(100));
    const cache = await StateCache.open({ dir, budgetBytes: 350, key: KEY, log });
    await cache.save("a", { tokens: [1] }, bytesOf(100));
    await cache.save("b", { tokens: [1] }, bytesOf(100));
    expect(cache.stats()).toEqual({ files: 3, bytes: 300, budgetBytes: 350 });
    // Using "a" makes "b" the least recently used of this key's; the old model's state is older still.
    await new Promise((r) => setTimeout(r, 5));
    expect(await load(cache, "a")).toBeDefined();
    await cache.save("c", { tokens: [1] }, bytesOf(100));
    expect(cache.stats()).toEqual({ files: 3, bytes: 300, budgetBytes: 350 });
    expect(await load(await StateCache.open({ dir, budgetBytes: 350, key: { ...KEY, model: "old" }, log }), "stale")).toBeUndefined();
    await cache.save("d", { tokens: [1] }, bytesOf(100));
    expect(await cache.find("b")).toBeUndefined();
    for (const kept of ["a", "c", "d"]) expect(await load(cache, kept)).toBeDefined();
  });

  it("a state larger than the whole budget is not kept, and nothing else is dropped for it", async () => {
    const dir = freshDir();
    const cache = await open(dir, KEY, 150);
    await cache.save("a", { tokens: [1] }, bytesOf(100));
    expect(await cache.save("huge", { tokens: [1] }, bytesOf(200))).toBeUndefined();
    expect(await load(cache, "a")).toBeDefined();
    expect(cache.stats()).toMatchObject({ files: 1, bytes: 100 });
  });
});

describe("drops", () => {
  it("a drop queued behind a save in progress wins: the state is never offered again", async () => {
    const dir = freshDir();
    const cache = await open(dir);
    let finishWrite!: () => void;
    const writing = new Promise<void>((resolve) => (finishWrite = resolve));
    const saving = cache.save("c1", { tokens: [1] }, async (path) => {
      await writing;
      writeFileSync(path, "state");
    });
    const dropped = cache.drop("c1");
    finishWrite();
    await saving;
    await dropped;
    expect(await cache.find("c1")).toBeUndefined();
    expect(readdirSync(join(dir, keyId(KEY)))).toEqual([]);
  });

  it("dropSavedStates deletes a channel's states under every key without opening a cache", async () => {
    const dir = freshDir();
    await (await open(dir)).save("c1", { tokens: [1] }, bytesOf(10));
    await (await open(dir, { ...KEY, contextSize: 4096 })).save("c1", { tokens: [1] }, bytesOf(10));
    await (await open(dir)).save("c2", { tokens: [1] }, bytesOf(10));
    await dropSavedStates(dir, "c1");
    expect(await (await open(dir)).find("c1")).toBeUndefined();
    expect(await (await open(dir, { ...KEY, contextSize: 4096 })).find("c1")).toBeUndefined();
    expect(await load(await open(dir), "c2")).toBeDefined();
    await dropSavedStates(join(dir, "no-such-folder"), "c1"); // nothing there: nothing to do
    expect(existsSync(join(dir, "no-such-folder"))).toBe(false);
  });
});
