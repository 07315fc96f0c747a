/**
 * A flood of messages while another process holds the database's write lock (a backup tool,
 * `sqlite3` on the file): how long Friend's event loop is blocked by the store writes, before and
 * after writes stopped trying the store once each during an outage (each try waits for SQLite's
 * 20 ms busy timeout). "Before" is what `DurableWrites.write` did then: queue, then flush.
 * Run: npm run bench -- store-outage [messages]   (default 200)
 */
import Database from "better-sqlite3";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { DurableWrites } from "../src/conversation/durable.ts";
import { SqliteStore } from "../src/store/sqlite.ts";

const messages = Number(process.argv[2] ?? 200);
const dir = mkdtempSync(join(tmpdir(), "friend-store-outage-"));

let runs = 0;

function run(label: string, write: (writes: DurableWrites, what: string, run: () => void) => void): void {
  const path = join(dir, `run-${runs++}.db`);
  const store = new SqliteStore({ path });
  const writes = new DurableWrites({ onFailure: () => undefined, retryMs: 1000 });
  const other = new Database(path);
  other.exec("BEGIN IMMEDIATE"); // the other process's write lock
  let tries = 0;
  const started = performance.now();
  // A reply finished as the lock was taken: its write heads the queue. (A failed write that only
  // inserts waits for SQLite's busy timeout; an accept, which reads first, fails at once.)
  write(writes, "save a reply", () => {
    tries++;
    store.complete("c", [], { author: "Friend", text: "Sure.", fromFriend: true, at: 0 });
  });
  for (let i = 0; i < messages; i++) {
    const id = String(100_000_000_000_000_000n + BigInt(i));
    write(writes, "accept a message", () => {
      tries++;
      store.accept({ channelId: "c", authorId: "u", turn: { author: "Alice", text: `message ${i}`, fromFriend: false, at: i, messageId: id } });
    });
  }
  const blockedMs = performance.now() - started;
  const triesLocked = tries;
  other.exec("COMMIT");
  const landed = writes.flush() && store.unanswered().length === messages && store.loadWindow("c").length === 1;
  writes.close();
  other.close();
  store.close();
  console.log(`| ${label} | ${messages} | ${triesLocked} | ${blockedMs.toFixed(0)} ms | ${(blockedMs / messages).toFixed(2)} ms | ${landed ? "yes" : "NO"} |`);
}

console.log(`a reply's write, then ${messages} messages accepted, while another connection holds the write lock (busy timeout 20 ms)\n`);
console.log("| writes | messages | store tries while locked | event loop blocked | per message | all landed in order after |");
console.log("|---|---|---|---|---|---|");
for (let round = 0; round < 2; round++) {
  run("before: every write tries the store", (writes, what, work) => {
    writes.write(what, work);
    writes.flush();
  });
  run("now: queued untried during an outage", (writes, what, work) => void writes.write(what, work));
}
rmSync(dir, { recursive: true, force: true });
