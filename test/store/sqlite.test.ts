import Database from "better-sqlite3";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Turn } from "../../src/conversation/turn.ts";
import { SCHEMA_VERSION, SqliteStore, StoreError } from "../../src/store/sqlite.ts";

const dir = () => mkdtempSync(join(tmpdir(), "friend-store-"));
const turn = (i: number, fromFriend = false): Turn => ({ author: fromFriend ? "Friend" : "Alice", text: `t${i}`, fromFriend, at: 1000 + i, ...(fromFriend ? {} : { messageId: `${100000000000000000 + i}` }) });

let open: SqliteStore[] = [];
const store = (options: ConstructorParameters<typeof SqliteStore>[0]) => {
  const s = new SqliteStore(options);
  open.push(s);
  return s;
};
afterEach(() => {
  for (const s of open) s.close();
  open = [];
});

describe("SqliteStore", () => {
  it("creates the folder, uses WAL and stamps the schema version", () => {
    const path = join(dir(), "nested", "deeper", "friend.db");
    store({ path }).close();
    const db = new Database(path, { readonly: true });
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(db.pragma("user_version", { simple: true })).toBe(SCHEMA_VERSION);
    db.close();
  });

  it("keeps windows, backend choices and answered ids across reopen", () => {
    const path = join(dir(), "friend.db");
    const a = store({ path });
    a.saveExchange("c1", [turn(1), turn(2, true)], ["100000000000000001"]);
    a.saveExchange("c2", [turn(3)], []);
    a.setBackend("c1", "local");
    a.close();
    const b = store({ path });
    expect(b.loadWindow("c1")).toEqual([turn(1), turn(2, true)]);
    expect(b.loadWindow("c2")).toEqual([turn(3)]);
    expect(b.getBackend("c1")).toBe("local");
    expect(b.getBackend("c2")).toBeUndefined();
    expect(b.isAnswered("100000000000000001")).toBe(true);
    expect(b.isAnswered("100000000000000003")).toBe(false);
  });

  it("really deletes a channel's rows on clear, leaving other channels", () => {
    const path = join(dir(), "friend.db");
    const s = store({ path });
    s.saveExchange("c1", [turn(1), turn(2)], []);
    s.saveExchange("c2", [turn(3)], []);
    s.clearWindow("c1");
    expect(s.loadWindow("c1")).toEqual([]);
    expect(s.loadWindow("c2")).toHaveLength(1);
    s.close();
    const raw = new Database(path, { readonly: true });
    expect(raw.prepare("SELECT count(*) AS n FROM turns WHERE channel_id = 'c1'").get()).toEqual({ n: 0 });
    raw.close();
  });

  it("bounds the turns kept per channel (retention)", () => {
    const s = store({ path: ":memory:", maxTurnsPerChannel: 5 });
    for (let i = 0; i < 20; i++) s.saveExchange("c", [turn(i)], []);
    expect(s.loadWindow("c").map((t) => t.text)).toEqual(["t15", "t16", "t17", "t18", "t19"]);
  });

  it("forgets answered ids after the retention period", async () => {
    const s = store({ path: ":memory:", answeredRetentionMs: 0 });
    s.saveExchange("c", [], ["1"]); // the first save sweeps, then every 500th
    expect(s.isAnswered("1")).toBe(true);
    await new Promise((r) => setTimeout(r, 5));
    for (let i = 0; i < 500; i++) s.saveExchange("c", [], []);
    expect(s.isAnswered("1")).toBe(false);
  });

  it(":memory: keeps nothing between instances", () => {
    store({ path: ":memory:" }).setBackend("c", "local");
    expect(store({ path: ":memory:" }).getBackend("c")).toBeUndefined();
  });

  it("refuses a corrupt file with a clear error and leaves it untouched", () => {
    const path = join(dir(), "friend.db");
    writeFileSync(path, "this is not a database, it's a sandwich".repeat(200));
    const before = readFileSync(path);
    expect(() => store({ path })).toThrowError(StoreError);
    expect(() => store({ path })).toThrowError(/is not a readable Friend database .*left untouched.*--move-corrupt-db/);
    expect(readFileSync(path).equals(before)).toBe(true);
  });

  it("moves a corrupt file aside only when asked, then starts empty", () => {
    const folder = dir();
    const path = join(folder, "friend.db");
    writeFileSync(path, "garbage".repeat(1000));
    const s = store({ path, moveCorruptAside: true });
    expect(s.loadWindow("c")).toEqual([]);
    const aside = readdirSync(folder).filter((f) => f.startsWith("friend.db.corrupt-"));
    expect(aside).toHaveLength(1);
    expect(readFileSync(join(folder, aside[0]!), "utf8")).toBe("garbage".repeat(1000));
  });

  it("refuses a database from a newer Friend, even with the move-aside flag", () => {
    const path = join(dir(), "friend.db");
    const db = new Database(path);
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    expect(() => store({ path, moveCorruptAside: true })).toThrowError(/written by a newer Friend/);
    expect(existsSync(path)).toBe(true);
  });

  it("reports health", () => {
    const s = store({ path: ":memory:" });
    expect(s.healthy()).toBe(true);
    s.close();
    expect(s.healthy()).toBe(false);
  });
});
