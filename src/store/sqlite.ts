import Database from "better-sqlite3";
import { existsSync, mkdirSync, renameSync } from "node:fs";
import { dirname } from "node:path";
import { BACKEND_NAMES, type BackendName } from "../backends/backend.ts";
import type { ConversationStore } from "../conversation/store.ts";
import type { Turn } from "../conversation/turn.ts";

/** Each entry moves the schema one version up; never edit one that has shipped, add another. */
const MIGRATIONS: string[] = [
  `CREATE TABLE channels (
     channel_id TEXT PRIMARY KEY,
     backend TEXT NOT NULL,
     updated_at INTEGER NOT NULL
   );
   CREATE TABLE turns (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     channel_id TEXT NOT NULL,
     author TEXT NOT NULL,
     text TEXT NOT NULL,
     from_friend INTEGER NOT NULL,
     at INTEGER NOT NULL,
     message_id TEXT
   );
   CREATE INDEX turns_by_channel ON turns (channel_id, id);
   CREATE TABLE answered (
     message_id TEXT PRIMARY KEY,
     at INTEGER NOT NULL
   );
   CREATE INDEX answered_by_time ON answered (at);`,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** The database file cannot be used; it has been left exactly as it was. */
export class StoreError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StoreError";
  }
}

export interface SqliteStoreOptions {
  /** A file path, or ":memory:" for no persistence. */
  path: string;
  /** Turns kept per channel; older ones are deleted, which bounds the file (default 200). */
  maxTurnsPerChannel?: number;
  /** Answered message ids are remembered this long, to refuse gateway replays (default 7 days). */
  answeredRetentionMs?: number;
  /** Move an unreadable file aside (to `<path>.corrupt-<time>`) and start empty, instead of refusing to start. */
  moveCorruptAside?: boolean;
}

/**
 * Friend's durable state in SQLite (WAL mode): each channel's backend choice and conversation
 * window, and the message ids already answered.
 */
export class SqliteStore implements ConversationStore {
  readonly #db: Database.Database;
  readonly #maxTurns: number;
  readonly #answeredRetentionMs: number;
  #saves = 0;
  readonly #q;

  constructor(options: SqliteStoreOptions) {
    this.#maxTurns = options.maxTurnsPerChannel ?? 200;
    this.#answeredRetentionMs = options.answeredRetentionMs ?? 7 * 24 * 3600 * 1000;
    this.#db = openDatabase(options.path, options.moveCorruptAside ?? false);
    const db = this.#db;
    this.#q = {
      window: db.prepare<[string, number]>("SELECT author, text, from_friend, at, message_id FROM (SELECT * FROM turns WHERE channel_id = ? ORDER BY id DESC LIMIT ?) ORDER BY id"),
      addTurn: db.prepare("INSERT INTO turns (channel_id, author, text, from_friend, at, message_id) VALUES (?, ?, ?, ?, ?, ?)"),
      trimTurns: db.prepare("DELETE FROM turns WHERE channel_id = ? AND id <= (SELECT id FROM turns WHERE channel_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)"),
      clear: db.prepare("DELETE FROM turns WHERE channel_id = ?"),
      answer: db.prepare("INSERT OR IGNORE INTO answered (message_id, at) VALUES (?, ?)"),
      isAnswered: db.prepare<[string]>("SELECT 1 FROM answered WHERE message_id = ?"),
      forgetAnswered: db.prepare("DELETE FROM answered WHERE at < ?"),
      getBackend: db.prepare<[string]>("SELECT backend FROM channels WHERE channel_id = ?"),
      setBackend: db.prepare(
        "INSERT INTO channels (channel_id, backend, updated_at) VALUES (?, ?, ?) ON CONFLICT (channel_id) DO UPDATE SET backend = excluded.backend, updated_at = excluded.updated_at",
      ),
    };
  }

  loadWindow(channelId: string): Turn[] {
    const rows = this.#q.window.all(channelId, this.#maxTurns) as { author: string; text: string; from_friend: number; at: number; message_id: string | null }[];
    return rows.map((r) => ({ author: r.author, text: r.text, fromFriend: r.from_friend === 1, at: r.at, ...(r.message_id ? { messageId: r.message_id } : {}) }));
  }

  readonly saveExchange = (channelId: string, turns: readonly Turn[], answeredIds: readonly string[]): void => {
    const now = Date.now();
    this.#db.transaction(() => {
      for (const t of turns) this.#q.addTurn.run(channelId, t.author, t.text, t.fromFriend ? 1 : 0, t.at, t.messageId ?? null);
      for (const id of answeredIds) this.#q.answer.run(id, now);
      this.#q.trimTurns.run(channelId, channelId, this.#maxTurns);
      // Forgetting old ids is cheap but not free: do it now and then, not on every reply.
      if (++this.#saves % 500 === 1) this.#q.forgetAnswered.run(now - this.#answeredRetentionMs);
    })();
  };

  clearWindow(channelId: string): void {
    this.#q.clear.run(channelId);
  }

  isAnswered(messageId: string): boolean {
    return this.#q.isAnswered.get(messageId) !== undefined;
  }

  getBackend(channelId: string): BackendName | undefined {
    const row = this.#q.getBackend.get(channelId) as { backend: string } | undefined;
    return row && (BACKEND_NAMES as readonly string[]).includes(row.backend) ? (row.backend as BackendName) : undefined;
  }

  setBackend(channelId: string, backend: BackendName): void {
    this.#q.setBackend.run(channelId, backend, Date.now());
  }

  /** Whether the database answers queries (for /healthz). */
  healthy(): boolean {
    try {
      return this.#db.open && this.#db.prepare("SELECT 1 AS ok").get() !== undefined;
    } catch {
      return false;
    }
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }
}

function openDatabase(path: string, moveCorruptAside: boolean): Database.Database {
  if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
  try {
    return migrate(new Database(path), path);
  } catch (err) {
    if (err instanceof StoreError) throw err; // a newer schema is not corruption: never move it
    if (!moveCorruptAside || path === ":memory:" || !existsSync(path)) {
      throw new StoreError(
        `FRIEND_DB_PATH=${path} is not a readable Friend database (${(err as Error).message}). It was left untouched. ` +
          "Restore a backup, or start once with --move-corrupt-db to move it aside and begin with empty state.",
        { cause: err },
      );
    }
    const aside = `${path}.corrupt-${new Date().toISOString().replace(/[:.]/g, "-")}`;
    renameSync(path, aside);
    for (const suffix of ["-wal", "-shm"]) if (existsSync(path + suffix)) renameSync(path + suffix, aside + suffix);
    console.error(`Moved the unreadable database ${path} to ${aside}; starting with empty state.`);
    return migrate(new Database(path), path);
  }
}

function migrate(db: Database.Database, path: string): Database.Database {
  try {
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = NORMAL");
    db.pragma("busy_timeout = 5000");
    const check = db.pragma("quick_check", { simple: true });
    if (check !== "ok") throw new Error(`integrity check failed: ${String(check)}`);
    const version = db.pragma("user_version", { simple: true }) as number;
    if (version > MIGRATIONS.length) {
      throw new StoreError(`FRIEND_DB_PATH=${path} was written by a newer Friend (schema ${version}, this one knows ${MIGRATIONS.length}). Upgrade Friend, or point FRIEND_DB_PATH elsewhere.`);
    }
    db.transaction(() => {
      for (let v = version; v < MIGRATIONS.length; v++) db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${MIGRATIONS.length}`);
    })();
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}
