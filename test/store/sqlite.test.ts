import Database from "better-sqlite3";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import type { Turn } from "../../src/core/turn.ts";
import { openFailure, openFailureMessage, SCHEMA_VERSION, SqliteStore, StoreError, StoreWriteError } from "../../src/store/sqlite.ts";

const dir = () => mkdtempSync(join(tmpdir(), "friend-store-"));
const turn = (i: number, fromFriend = false): Turn => ({ author: fromFriend ? "Friend" : "Alice", text: `t${i}`, fromFriend, at: 1000 + i, ...(fromFriend ? {} : { messageId: String(100000000000000000n + BigInt(i)) }) });

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

  const accepted = (i: number, channelId = "c1") => ({ channelId, authorId: "u1", turn: { ...turn(i), authorId: "u1" } as Turn & { messageId: string } });

  it("keeps windows, token counts, backend choices and answered ids across reopen", () => {
    const path = join(dir(), "friend.db");
    const a = store({ path });
    expect(a.accept(accepted(1))).toBe(true);
    a.complete("c1", [turn(1)], { ...turn(2, true), tokens: 7 });
    a.accept(accepted(3, "c2"));
    a.complete("c2", [turn(3)], null);
    a.setBackend("c1", "local");
    a.close();
    const b = store({ path });
    expect(b.loadWindow("c1")).toEqual([turn(1), { ...turn(2, true), tokens: 7 }]);
    expect(b.loadWindow("c2")).toEqual([turn(3)]);
    expect(b.getBackend("c1")).toBe("local");
    expect(b.getBackend("c2")).toBeUndefined();
    expect(b.isKnown("100000000000000001")).toBe(true);
    expect(b.isKnown("100000000000000004")).toBe(false);
    expect(b.unanswered()).toEqual([]);
  });

  it("keeps personas, webhooks and a begun reply's webhook parts across reopen, and /reset's clear leaves them", () => {
    const path = join(dir(), "friend.db");
    const a = store({ path });
    a.setPersona("c1", "Joey");
    a.setPersona("c1", "Rachel");
    a.setWebhook("c1", { id: "900000000000000001", token: "secret-token" });
    a.beginWebhookPart("t1", 1, "m2");
    a.beginWebhookPart("t1", 0, "m1");
    a.beginWebhookPart("t2", 0, "m9");
    a.clearChannel("c1");
    a.close();
    const b = store({ path });
    expect(b.getPersona("c1")).toBe("Rachel");
    expect(b.getPersona("c2")).toBeUndefined();
    expect(b.getWebhook("c1")).toEqual({ id: "900000000000000001", token: "secret-token" });
    expect(b.webhookParts("t1")).toEqual(["m1", "m2"]);
    b.forgetWebhookParts("t1");
    expect(b.webhookParts("t1")).toEqual([]);
    expect(b.webhookParts("t2")).toEqual(["m9"]);
    b.setWebhook("c1", null);
    expect(b.getWebhook("c1")).toBeUndefined();
  });

  it("keeps accepted messages unanswered until their reply is completed, oldest first, across reopen", () => {
    const path = join(dir(), "friend.db");
    const a = store({ path });
    a.accept(accepted(5));
    a.accept(accepted(4, "c2"));
    expect(a.accept(accepted(5))).toBe(false); // a replay is not new
    a.close();
    const b = store({ path });
    expect(b.unanswered()).toEqual([accepted(4, "c2"), accepted(5)]);
    expect(b.loadWindow("c1")).toEqual([]); // not part of the story until answered
    b.complete("c1", [turn(5)], null);
    expect(b.unanswered()).toEqual([accepted(4, "c2")]);
    b.drop("c1", [turn(4).messageId!]);
    expect(b.unanswered()).toEqual([]);
    expect(b.accept(accepted(4, "c2"))).toBe(false); // dropped counts as handled
  });

  it("really deletes a channel's rows on clear, unanswered ones included, leaving other channels", () => {
    const path = join(dir(), "friend.db");
    const s = store({ path });
    s.complete("c1", [turn(1), turn(2)], null);
    s.complete("c2", [turn(3)], null);
    s.accept(accepted(4));
    s.clearChannel("c1");
    expect(s.loadWindow("c1")).toEqual([]);
    expect(s.loadWindow("c2")).toHaveLength(1);
    expect(s.unanswered()).toEqual([]);
    s.close();
    const raw = new Database(path, { readonly: true });
    expect(raw.prepare("SELECT count(*) AS n FROM turns WHERE channel_id = 'c1'").get()).toEqual({ n: 0 });
    expect(raw.prepare("SELECT count(*) AS n FROM accepted").get()).toEqual({ n: 0 });
    raw.close();
  });

  it("bounds the turns kept per channel (retention)", () => {
    const s = store({ path: ":memory:", maxTurnsPerChannel: 5 });
    for (let i = 0; i < 20; i++) s.complete("c", [turn(i)], null);
    expect(s.loadWindow("c").map((t) => t.text)).toEqual(["t15", "t16", "t17", "t18", "t19"]);
  });

  it("forgets answered ids after the retention period", async () => {
    const s = store({ path: ":memory:", answeredRetentionMs: 0 });
    s.complete("c", [turn(1)], null); // the first save sweeps, then every 500th
    expect(s.isKnown(turn(1).messageId!)).toBe(true);
    await new Promise((r) => setTimeout(r, 5));
    for (let i = 0; i < 500; i++) s.complete("c", [], null);
    expect(s.isKnown(turn(1).messageId!)).toBe(false);
  });

  it("migrates a version-1 database, keeping its turns (without token counts)", () => {
    const path = join(dir(), "friend.db");
    const v1 = new Database(path);
    v1.exec(`CREATE TABLE channels (channel_id TEXT PRIMARY KEY, backend TEXT NOT NULL, updated_at INTEGER NOT NULL);
      CREATE TABLE turns (id INTEGER PRIMARY KEY AUTOINCREMENT, channel_id TEXT NOT NULL, author TEXT NOT NULL, text TEXT NOT NULL, from_friend INTEGER NOT NULL, at INTEGER NOT NULL, message_id TEXT);
      CREATE INDEX turns_by_channel ON turns (channel_id, id);
      CREATE TABLE answered (message_id TEXT PRIMARY KEY, at INTEGER NOT NULL);
      CREATE INDEX answered_by_time ON answered (at);
      INSERT INTO turns (channel_id, author, text, from_friend, at, message_id) VALUES ('c', 'Alice', 'old', 0, 5, NULL);`);
    v1.pragma("user_version = 1");
    v1.close();
    const s = store({ path });
    expect(s.loadWindow("c")).toEqual([{ author: "Alice", text: "old", fromFriend: false, at: 5 }]);
  });

  it("rows from before authors were kept cannot be attributed: /forget leaves them, and says nothing of them", () => {
    const path = join(dir(), "friend.db");
    const v1 = new Database(path);
    v1.exec(`CREATE TABLE channels (channel_id TEXT PRIMARY KEY, backend TEXT NOT NULL, updated_at INTEGER NOT NULL);
      CREATE TABLE turns (id INTEGER PRIMARY KEY AUTOINCREMENT, channel_id TEXT NOT NULL, author TEXT NOT NULL, text TEXT NOT NULL, from_friend INTEGER NOT NULL, at INTEGER NOT NULL, message_id TEXT);
      CREATE INDEX turns_by_channel ON turns (channel_id, id);
      CREATE TABLE answered (message_id TEXT PRIMARY KEY, at INTEGER NOT NULL);
      CREATE INDEX answered_by_time ON answered (at);
      INSERT INTO turns (channel_id, author, text, from_friend, at, message_id) VALUES ('c', 'Alice', 'old', 0, 5, '100000000000000009');`);
    v1.pragma("user_version = 1");
    v1.close();
    const s = store({ path });
    expect(s.channelsOf("u1")).toEqual([]);
    expect(s.forgetAuthor("c", "u1")).toEqual({ turns: 0, replies: 0, unanswered: 0 });
    expect(s.loadWindow("c").map((t) => t.text)).toEqual(["old"]);
    // Deleting it on Discord still works: the message id was always kept.
    expect(s.forgetMessages("c", ["100000000000000009"])).toBe(1);
    expect(s.loadWindow("c")).toEqual([]);
  });

  describe("a user's words have a lifetime", () => {
    const said = (i: number, authorId: string, at = 1000 + i): Turn & { messageId: string } => ({
      author: authorId,
      text: `t${i}`,
      fromFriend: false,
      at,
      messageId: String(100000000000000000n + BigInt(i)),
      authorId,
    });
    const reply = (i: number, answered: string[], at = 1000 + i): Turn => ({ author: "Friend", text: `r${i}`, fromFriend: true, at, answered });
    const rows = (path: string, table: string, where: string) => {
      const raw = new Database(path, { readonly: true });
      const n = (raw.prepare(`SELECT count(*) AS n FROM ${table} WHERE ${where}`).get() as { n: number }).n;
      raw.close();
      return n;
    };

    it("keeps who said each turn and whom each reply answered, across reopen", () => {
      const path = join(dir(), "friend.db");
      const a = store({ path });
      a.complete("c", [said(1, "u1"), said(2, "u2")], reply(3, ["u1", "u2"]));
      a.close();
      expect(store({ path }).loadWindow("c")).toEqual([said(1, "u1"), said(2, "u2"), reply(3, ["u1", "u2"])]);
    });

    it("a deleted message leaves the turns and the unanswered ones; its id stays known so a replay is not answered; unknown ids leave no trace", () => {
      const path = join(dir(), "friend.db");
      const s = store({ path });
      s.complete("c", [said(1, "u1")], reply(2, ["u1"]));
      s.accept({ channelId: "c", authorId: "u1", turn: said(3, "u1") });
      expect(s.forgetMessages("c", [said(1, "u1").messageId, said(3, "u1").messageId, "100000000000000077"])).toBe(2);
      expect(s.loadWindow("c")).toEqual([reply(2, ["u1"])]);
      expect(s.unanswered()).toEqual([]);
      expect(s.accept({ channelId: "c", authorId: "u1", turn: said(3, "u1") })).toBe(false);
      expect(s.isKnown("100000000000000077")).toBe(false);
      expect(rows(path, "turns", "text IN ('t1', 't3')") + rows(path, "accepted", "1")).toBe(0);
    });

    it("an edit replaces the text of an unanswered message or of a turn", () => {
      const s = store({ path: ":memory:" });
      s.complete("c", [said(1, "u1")], null);
      s.accept({ channelId: "c", authorId: "u1", turn: said(2, "u1") });
      expect(s.reviseMessage("c", said(1, "u1").messageId, "edited one", 2)).toBe(1);
      expect(s.reviseMessage("c", said(2, "u1").messageId, "edited two", 2)).toBe(1);
      expect(s.reviseMessage("other", said(1, "u1").messageId, "wrong channel", 2)).toBe(0);
      expect(s.loadWindow("c").map((t) => [t.text, t.tokens])).toEqual([["edited one", 2]]);
      expect(s.unanswered().map((m) => m.turn.text)).toEqual(["edited two"]);
    });

    it("forgetting a user removes their turns, their unanswered messages and Friend's replies to them, and nobody else's", () => {
      const s = store({ path: ":memory:" });
      s.complete("c", [said(1, "u1")], reply(2, ["u1"]));
      s.complete("c", [said(3, "u2")], reply(4, ["u2"]));
      s.complete("c", [said(5, "u1"), said(6, "u2")], reply(7, ["u1", "u2"]));
      s.complete("dm", [said(8, "u1")], reply(9, ["u1"]));
      s.accept({ channelId: "c", authorId: "u1", turn: said(10, "u1") });
      expect(s.channelsOf("u1").sort()).toEqual(["c", "dm"]);
      expect(s.forgetAuthor("c", "u1")).toEqual({ turns: 2, replies: 2, unanswered: 1 });
      expect(s.loadWindow("c").map((t) => t.text)).toEqual(["t3", "r4", "t6"]);
      expect(s.channelsOf("u1")).toEqual(["dm"]);
      expect(s.forgetAuthor("dm", "u1")).toEqual({ turns: 1, replies: 1, unanswered: 0 });
      expect(s.channelsOf("u1")).toEqual([]);
      expect(s.unanswered()).toEqual([]);
    });

    it("expiry forgets turns, unanswered messages and answered ids from before the cut-off, in one channel", () => {
      const s = store({ path: ":memory:" });
      s.complete("c", [said(1, "u1", 100)], reply(2, ["u1"], 200));
      s.complete("c", [said(3, "u1", 5000)], reply(4, ["u1"], 5001));
      s.complete("d", [said(5, "u1", 100)], null);
      s.accept({ channelId: "c", authorId: "u1", turn: said(6, "u1", 300) });
      expect(s.channelsBefore(1000).sort()).toEqual(["c", "d"]);
      expect(s.expire("c", 1000)).toBe(2);
      expect(s.loadWindow("c").map((t) => t.text)).toEqual(["t3", "r4"]);
      expect(s.unanswered()).toEqual([]);
      expect(s.channelsBefore(1000)).toEqual(["d"]);
    });

    it("any sequence of replies, deletes, /forget, expiry and channel deletes leaves exactly what a plain model of them leaves", () => {
      type Op =
        | { kind: "exchange"; channel: string; authors: string[]; at: number }
        | { kind: "delete"; channel: string; pick: number }
        | { kind: "forget"; channel: string; author: string }
        | { kind: "expire"; channel: string; before: number }
        | { kind: "leave"; channel: string };
      const channel = fc.constantFrom("c1", "c2", "dm");
      const author = fc.constantFrom("u1", "u2", "u3");
      const op: fc.Arbitrary<Op> = fc.oneof(
        fc.record({ kind: fc.constant("exchange" as const), channel, authors: fc.array(author, { minLength: 1, maxLength: 3 }), at: fc.integer({ min: 0, max: 100 }) }),
        fc.record({ kind: fc.constant("delete" as const), channel, pick: fc.nat() }),
        fc.record({ kind: fc.constant("forget" as const), channel, author }),
        fc.record({ kind: fc.constant("expire" as const), channel, before: fc.integer({ min: 0, max: 100 }) }),
        fc.record({ kind: fc.constant("leave" as const), channel }),
      );
      fc.assert(
        fc.property(fc.array(op, { maxLength: 30 }), (ops) => {
          const s = new SqliteStore({ path: ":memory:" });
          const model = new Map<string, Turn[]>();
          let next = 0;
          for (const o of ops) {
            const turns = model.get(o.channel) ?? [];
            if (o.kind === "exchange") {
              const said = o.authors.map((a) => ({ author: a, text: `t${next}`, fromFriend: false, at: o.at, messageId: String(100000000000000000n + BigInt(next++)), authorId: a }));
              const reply: Turn = { author: "Friend", text: `r${next++}`, fromFriend: true, at: o.at, answered: [...new Set(o.authors)] };
              s.complete(o.channel, said, reply);
              model.set(o.channel, [...turns, ...said, reply]);
            } else if (o.kind === "delete") {
              const users = turns.filter((t) => !t.fromFriend);
              const id = users.length > 0 ? users[o.pick % users.length]!.messageId! : "100000000000000999";
              s.forgetMessages(o.channel, [id]);
              model.set(o.channel, turns.filter((t) => t.messageId !== id));
            } else if (o.kind === "forget") {
              s.forgetAuthor(o.channel, o.author);
              model.set(o.channel, turns.filter((t) => t.authorId !== o.author && !t.answered?.includes(o.author)));
            } else if (o.kind === "expire") {
              s.expire(o.channel, o.before);
              model.set(o.channel, turns.filter((t) => t.at >= o.before));
            } else {
              s.forgetChannel(o.channel);
              model.delete(o.channel);
            }
          }
          for (const c of ["c1", "c2", "dm"]) expect(s.loadWindow(c)).toEqual(model.get(c) ?? []);
          for (const a of ["u1", "u2", "u3"]) {
            const holding = [...model].filter(([, turns]) => turns.some((t) => t.authorId === a || t.answered?.includes(a))).map(([c]) => c);
            expect(s.channelsOf(a).sort()).toEqual(holding.sort());
          }
          s.close();
        }),
        { numRuns: 150 },
      );
    });

    it("forgetting a deleted channel leaves no row of it in any table; its server's and parent's other channels are found", () => {
      const path = join(dir(), "friend.db");
      const s = store({ path });
      s.accept({ channelId: "thread", authorId: "u1", turn: said(1, "u1"), guildId: "g", parentId: "c" });
      s.complete("thread", [said(1, "u1")], reply(2, ["u1"]));
      s.accept({ channelId: "c", authorId: "u1", turn: said(3, "u1"), guildId: "g" });
      s.accept({ channelId: "other", authorId: "u1", turn: said(4, "u1"), guildId: "g2" });
      s.setBackend("c", "local");
      expect(s.channelsUnder("c")).toEqual(["thread"]);
      expect(s.channelsUnder("g").sort()).toEqual(["c", "thread"]);
      for (const channel of ["c", "thread"]) s.forgetChannel(channel);
      for (const table of ["turns", "accepted", "answered", "channels", "places"]) {
        expect(rows(path, table, "channel_id IN ('c', 'thread')"), table).toBe(0);
      }
      expect(s.unanswered().map((m) => m.channelId)).toEqual(["other"]);
    });
  });

  it("turns a failed write into a StoreWriteError naming what was written, and reports unhealthy until writes work again", () => {
    const path = join(dir(), "friend.db");
    const s = store({ path, busyTimeoutMs: 50 });
    const other = new Database(path);
    other.exec("BEGIN EXCLUSIVE"); // another process holding the write lock
    try {
      expect(() => s.accept(accepted(1))).toThrowError(StoreWriteError);
      expect(() => s.complete("c1", [turn(1)], null)).toThrowError(/Could not save a reply in the database: database is locked/);
      expect(s.healthy()).toBe(false);
    } finally {
      other.exec("ROLLBACK");
      other.close();
    }
    expect(s.healthy()).toBe(true);
    expect(s.accept(accepted(1))).toBe(true);
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

describe("openFailure: what is wrong with a database that cannot be opened", () => {
  const err = (code: string, message = "boom") => Object.assign(new Error(message), { code });
  it.each([
    ["SQLITE_NOTADB", "corrupt"],
    ["SQLITE_CORRUPT", "corrupt"],
    ["SQLITE_CORRUPT_INDEX", "corrupt"],
    ["SQLITE_READONLY", "unwritable"],
    ["SQLITE_READONLY_DIRECTORY", "unwritable"],
    ["SQLITE_CANTOPEN", "unwritable"],
    ["SQLITE_PERM", "unwritable"],
    ["EACCES", "unwritable"],
    ["EROFS", "unwritable"],
    ["SQLITE_FULL", "full"],
    ["ENOSPC", "full"],
    ["SQLITE_BUSY", "locked"],
    ["SQLITE_IOERR_READ", "io"],
  ])("%s is %s", (code, kind) => {
    expect(openFailure(err(code))).toBe(kind);
  });

  it("offers --move-corrupt-db only for a corrupt file", () => {
    expect(openFailureMessage("db", err("SQLITE_NOTADB"))).toContain("--move-corrupt-db");
    expect(openFailure(new Error("integrity check failed: row 3 missing"))).toBe("corrupt");
    for (const code of ["SQLITE_READONLY", "EROFS", "SQLITE_FULL", "SQLITE_BUSY", "SQLITE_IOERR"]) {
      expect(openFailureMessage("db", err(code))).not.toContain("--move-corrupt-db");
    }
  });
});
