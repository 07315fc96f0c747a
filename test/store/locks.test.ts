import Database from "better-sqlite3";
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { SCHEMA_VERSION, SqliteStore, StoreError, StoreWriteError } from "../../src/store/sqlite.ts";

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

describe("processes starting on one database at the same moment", () => {
  it("all open it (a fresh file, or one of an older schema), and the migrations run once", async () => {
    const store = new URL("../../src/store/sqlite.ts", import.meta.url).pathname;
    for (const older of [false, true]) {
      const folder = dir();
      const path = join(folder, "friend.db");
      const go = join(folder, "go");
      if (older) {
        // A database of the schema before the last: its last migration runs while the others wait.
        new SqliteStore({ path }).close();
        const previous = new Database(path);
        previous.exec("ALTER TABLE accepted DROP COLUMN character");
        previous.pragma(`user_version = ${SCHEMA_VERSION - 1}`);
        previous.close();
      }
      // Each waits for the same go file, then opens at once.
      const script = `import { existsSync } from "node:fs";
        import { SqliteStore } from ${JSON.stringify(store)};
        while (!existsSync(${JSON.stringify(go)})) await new Promise((r) => setTimeout(r, 2));
        new SqliteStore({ path: ${JSON.stringify(path)} }).close();`;
      const children = Array.from({ length: 4 }, () => {
        const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { stdio: ["ignore", "ignore", "pipe"] });
        cleanup.push(() => child.kill("SIGKILL"));
        let stderr = "";
        child.stderr!.on("data", (d) => (stderr += d));
        return new Promise<{ code: number | null; stderr: string }>((resolve) => child.on("exit", (code) => resolve({ code, stderr })));
      });
      await new Promise((r) => setTimeout(r, 4000)); // every child started and waiting
      writeFileSync(go, "");
      expect(await Promise.all(children)).toEqual(Array.from({ length: 4 }, () => ({ code: 0, stderr: "" })));
      const db = new Database(path);
      expect(db.pragma("user_version", { simple: true })).toBe(SCHEMA_VERSION);
      db.close();
    }
  }, 60_000);
});
