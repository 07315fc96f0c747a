import Database from "better-sqlite3";
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { SqliteStore, StoreError, StoreWriteError } from "../../src/store/sqlite.ts";

const dir = () => mkdtempSync(join(tmpdir(), "friend-locks-"));
const accepted = (id: string) => ({ channelId: "c", authorId: "u", turn: { author: "Alice", text: "hi", fromFriend: false, at: 1, messageId: id } });

let cleanup: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanup.reverse()) f();
  cleanup = [];
});
const open = (path: string) => {
  const s = new SqliteStore({ path });
  cleanup.push(() => s.close());
  return s;
};

describe("another process holding the database's lock", () => {
  it("fails a write at once (no wait on the event loop), turns health off, and both come back when the lock goes", () => {
    const path = join(dir(), "friend.db");
    const store = open(path);
    const other = new Database(path);
    cleanup.push(() => other.close());
    other.exec("BEGIN EXCLUSIVE");
    expect(() => store.accept(accepted("100000000000000001"))).toThrow(StoreWriteError);
    expect(store.healthy()).toBe(false);
    other.exec("COMMIT");
    expect(store.healthy()).toBe(true);
    expect(store.accept(accepted("100000000000000001"))).toBe(true);
  });
});

describe("one Friend bot per database", () => {
  it("a second live owner is refused with a line that names the database and the other process", async () => {
    const path = join(dir(), "friend.db");
    // The first owner is another live process on this host.
    const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60000)"], { stdio: "ignore" });
    cleanup.push(() => child.kill("SIGKILL"));
    const raw = new Database(path);
    open(path).close(); // migrations
    raw.prepare("INSERT INTO instance (id, pid, host, heartbeat_at) VALUES (1, ?, ?, ?)").run(child.pid, hostname(), Date.now());
    raw.close();
    const second = open(path);
    expect(() => second.claimOwnership(path)).toThrow(StoreError);
    expect(() => second.claimOwnership(path)).toThrow(new RegExp(`FRIEND_DB_PATH=${path} is in use by another Friend \\(pid ${child.pid} on ${hostname()}`));
  });

  it("takes over from an owner whose process is gone (SIGKILL, then a restart) or that has been silent", () => {
    const path = join(dir(), "friend.db");
    open(path).close();
    const raw = new Database(path);
    raw.prepare("INSERT INTO instance (id, pid, host, heartbeat_at) VALUES (1, ?, ?, ?)").run(2 ** 22 + 12345, hostname(), Date.now());
    const a = open(path);
    expect(() => a.claimOwnership(path)).not.toThrow();
    a.close();
    raw.prepare("INSERT INTO instance (id, pid, host, heartbeat_at) VALUES (1, ?, 'elsewhere', ?) ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, host = excluded.host, heartbeat_at = excluded.heartbeat_at").run(1, Date.now() - 60_000);
    raw.close();
    const b = open(path);
    expect(() => b.claimOwnership(path)).not.toThrow();
  });

  it("gives the database up on close, so the next start needs no wait", () => {
    const path = join(dir(), "friend.db");
    const a = open(path);
    a.claimOwnership(path);
    a.close();
    const b = open(path);
    expect(() => b.claimOwnership(path)).not.toThrow();
  });
});
