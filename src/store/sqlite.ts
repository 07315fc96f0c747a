import Database from "better-sqlite3";
import { existsSync, mkdirSync, renameSync } from "node:fs";
import { hostname } from "node:os";
import { dirname } from "node:path";
import { BACKEND_NAMES, type BackendName } from "../core/backend.ts";
import { processAlive } from "../core/process.ts";
import type { AcceptedMessage, ChannelPlace, ConversationStore, ForgottenAuthor } from "../conversation/store.ts";
import type { Turn } from "../core/turn.ts";
import type { WebhookCredentials, WebhookStore } from "../core/webhook.ts";

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
  // 2: messages are durable from acceptance (catch-up after a crash); token counts are kept per turn.
  `ALTER TABLE turns ADD COLUMN tokens INTEGER;
   CREATE TABLE accepted (
     message_id TEXT PRIMARY KEY,
     channel_id TEXT NOT NULL,
     author_id TEXT NOT NULL,
     author TEXT NOT NULL,
     text TEXT NOT NULL,
     at INTEGER NOT NULL,
     tokens INTEGER
   );
   CREATE INDEX accepted_by_channel ON accepted (channel_id, at);
   CREATE TABLE probe (id INTEGER PRIMARY KEY CHECK (id = 1), at INTEGER NOT NULL);`,
  // 3: the Friend bot that owns the database, so that a second one is refused.
  `CREATE TABLE instance (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     pid INTEGER NOT NULL,
     host TEXT NOT NULL,
     heartbeat_at INTEGER NOT NULL
   );`,
  // 4: each channel's /persona and /scene, the webhook Friend posts characters through there (its token is a
  // secret), and the webhook messages of a reply not yet finished (catch-up edits them after a crash).
  `CREATE TABLE personas (
     channel_id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     updated_at INTEGER NOT NULL
   );
   CREATE TABLE scenes (
     channel_id TEXT PRIMARY KEY,
     lines INTEGER NOT NULL,
     updated_at INTEGER NOT NULL
   );
   CREATE TABLE webhooks (
     channel_id TEXT PRIMARY KEY,
     webhook_id TEXT NOT NULL,
     token TEXT NOT NULL,
     updated_at INTEGER NOT NULL
   );
   CREATE TABLE webhook_parts (
     trigger_id TEXT NOT NULL,
     part INTEGER NOT NULL,
     message_id TEXT NOT NULL,
     at INTEGER NOT NULL,
     PRIMARY KEY (trigger_id, part)
   );`,
  // 5: a user's words have a lifetime. Who said each turn (and whom Friend's replies answered), so
  // /forget finds them; rows from before this have neither and cannot be attributed. Which channel
  // an answered id belongs to, and where each channel lives, so leaving a server leaves nothing.
  `ALTER TABLE turns ADD COLUMN author_id TEXT;
   ALTER TABLE turns ADD COLUMN answered_authors TEXT;
   ALTER TABLE answered ADD COLUMN channel_id TEXT;
   CREATE INDEX turns_by_message ON turns (message_id) WHERE message_id IS NOT NULL;
   CREATE INDEX turns_by_author ON turns (author_id) WHERE author_id IS NOT NULL;
   CREATE INDEX turns_by_time ON turns (at);
   CREATE INDEX accepted_by_author ON accepted (author_id);
   CREATE INDEX answered_by_channel ON answered (channel_id);
   CREATE TABLE places (
     channel_id TEXT PRIMARY KEY,
     guild_id TEXT NOT NULL,
     parent_id TEXT
   );
   CREATE INDEX places_by_guild ON places (guild_id);
   CREATE INDEX places_by_parent ON places (parent_id);`,
  // 6: the cast member a waiting message replies to, so catch-up after a restart answers as them.
  `ALTER TABLE accepted ADD COLUMN character TEXT;`,
];

/** How often the owning bot says it is alive, and after how long without a word another may take over. */
const HEARTBEAT_MS = 5000;
const OWNER_STALE_MS = 20_000;

export const SCHEMA_VERSION = MIGRATIONS.length;

/** The database file cannot be used; it has been left exactly as it was. */
export class StoreError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StoreError";
  }
}

/** A write failed (a full disk, a lock held too long, a read-only file); the message says which. */
export class StoreWriteError extends Error {
  constructor(what: string, cause: unknown) {
    super(`Could not ${what} in the database: ${(cause as Error).message}`, { cause });
    this.name = "StoreWriteError";
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
  /**
   * How long a call waits for a lock held by another process before it fails (default 20 ms).
   * better-sqlite3 waits on the event loop, so this stays short: a failed write is retried later
   * (see DurableWrites) and a failed read ends its turn in the error line, rather than every
   * channel and /healthz freezing behind another process's lock.
   */
  busyTimeoutMs?: number;
}

type TurnRow = {
  author: string;
  text: string;
  from_friend: number;
  at: number;
  message_id: string | null;
  tokens: number | null;
  author_id: string | null;
  answered_authors: string | null;
};
type AcceptedRow = { message_id: string; channel_id: string; author_id: string; author: string; text: string; at: number; tokens: number | null; character: string | null };

function turnOf(r: TurnRow): Turn {
  return {
    author: r.author,
    text: r.text,
    fromFriend: r.from_friend === 1,
    at: r.at,
    ...(r.message_id ? { messageId: r.message_id } : {}),
    ...(r.tokens !== null ? { tokens: r.tokens } : {}),
    ...(r.author_id !== null ? { authorId: r.author_id } : {}),
    ...(r.answered_authors !== null ? { answered: JSON.parse(r.answered_authors) as string[] } : {}),
  };
}

/** Friend's turns that answered the user bound to the last parameter. */
const ANSWERED_AUTHOR = "(from_friend = 1 AND answered_authors IS NOT NULL AND EXISTS (SELECT 1 FROM json_each(turns.answered_authors) WHERE value = ?))";
const col = (r: { channel_id: string }) => r.channel_id;

/**
 * Friend's durable state in SQLite (WAL mode): each channel's backend choice and conversation
 * window, the messages accepted but not yet answered, and the message ids already answered.
 */
export class SqliteStore implements ConversationStore, WebhookStore {
  readonly #db: Database.Database;
  readonly #maxTurns: number;
  readonly #answeredRetentionMs: number;
  #saves = 0;
  /** The last write failure, until a write succeeds again; /healthz is 503 meanwhile. */
  #writeFailure: Error | null = null;
  /** The last read failure, until a read succeeds again; a corrupt page stays until a restart. */
  #readFailure: { err: Error; corrupt: boolean } | null = null;
  #heartbeat: NodeJS.Timeout | undefined;
  readonly #q;

  constructor(options: SqliteStoreOptions) {
    this.#maxTurns = options.maxTurnsPerChannel ?? 200;
    this.#answeredRetentionMs = options.answeredRetentionMs ?? 7 * 24 * 3600 * 1000;
    this.#db = openDatabase(options.path, options.moveCorruptAside ?? false, options.busyTimeoutMs ?? 20);
    const db = this.#db;
    this.#q = {
      window: db.prepare<[string, number]>(
        "SELECT author, text, from_friend, at, message_id, tokens, author_id, answered_authors FROM (SELECT * FROM turns WHERE channel_id = ? ORDER BY id DESC LIMIT ?) ORDER BY id",
      ),
      addTurn: db.prepare(
        "INSERT INTO turns (channel_id, author, text, from_friend, at, message_id, tokens, author_id, answered_authors) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      ),
      trimTurns: db.prepare("DELETE FROM turns WHERE channel_id = ? AND id <= (SELECT id FROM turns WHERE channel_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)"),
      clearTurns: db.prepare("DELETE FROM turns WHERE channel_id = ?"),
      accept: db.prepare("INSERT INTO accepted (message_id, channel_id, author_id, author, text, at, tokens, character) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
      unaccept: db.prepare("DELETE FROM accepted WHERE message_id = ?"),
      unacceptIn: db.prepare("DELETE FROM accepted WHERE channel_id = ? AND message_id = ?"),
      accepted: db.prepare("SELECT * FROM accepted ORDER BY at, rowid"),
      acceptedIn: db.prepare<[string]>("SELECT message_id FROM accepted WHERE channel_id = ?"),
      isAccepted: db.prepare<[string]>("SELECT 1 FROM accepted WHERE message_id = ?"),
      answer: db.prepare("INSERT OR IGNORE INTO answered (message_id, at, channel_id) VALUES (?, ?, ?)"),
      place: db.prepare("INSERT INTO places (channel_id, guild_id, parent_id) VALUES (?, ?, ?) ON CONFLICT (channel_id) DO NOTHING"),
      forgetTurn: db.prepare("DELETE FROM turns WHERE channel_id = ? AND message_id = ?"),
      reviseTurn: db.prepare("UPDATE turns SET text = ?, tokens = ? WHERE channel_id = ? AND message_id = ?"),
      reviseAccepted: db.prepare("UPDATE accepted SET text = ?, tokens = ? WHERE channel_id = ? AND message_id = ?"),
      channelsOf: db.prepare<[string, string, string]>(
        `SELECT channel_id FROM turns WHERE author_id = ? UNION SELECT channel_id FROM accepted WHERE author_id = ? UNION SELECT channel_id FROM turns WHERE ${ANSWERED_AUTHOR}`,
      ),
      forgetAuthorTurns: db.prepare("DELETE FROM turns WHERE channel_id = ? AND author_id = ?"),
      forgetAnsweringTurns: db.prepare(`DELETE FROM turns WHERE channel_id = ? AND ${ANSWERED_AUTHOR}`),
      acceptedOf: db.prepare<[string, string]>("SELECT message_id FROM accepted WHERE channel_id = ? AND author_id = ?"),
      channelsBefore: db.prepare<[number, number]>("SELECT channel_id FROM turns WHERE at < ? UNION SELECT channel_id FROM accepted WHERE at < ?"),
      expireTurns: db.prepare("DELETE FROM turns WHERE channel_id = ? AND at < ?"),
      expireAccepted: db.prepare("DELETE FROM accepted WHERE channel_id = ? AND at < ?"),
      expireAnswered: db.prepare("DELETE FROM answered WHERE channel_id = ? AND at < ?"),
      channelsUnder: db.prepare<[string, string]>("SELECT channel_id FROM places WHERE guild_id = ? OR parent_id = ?"),
      places: db.prepare("SELECT channel_id, guild_id, parent_id FROM places"),
      forgetAccepted: db.prepare("DELETE FROM accepted WHERE channel_id = ?"),
      forgetAnswered: db.prepare("DELETE FROM answered WHERE channel_id = ?"),
      forgetBackend: db.prepare("DELETE FROM channels WHERE channel_id = ?"),
      forgetPlace: db.prepare("DELETE FROM places WHERE channel_id = ?"),
      isAnswered: db.prepare<[string]>("SELECT 1 FROM answered WHERE message_id = ?"),
      forgetOldAnswered: db.prepare("DELETE FROM answered WHERE at < ?"),
      getBackend: db.prepare<[string]>("SELECT backend FROM channels WHERE channel_id = ?"),
      setBackend: db.prepare(
        "INSERT INTO channels (channel_id, backend, updated_at) VALUES (?, ?, ?) ON CONFLICT (channel_id) DO UPDATE SET backend = excluded.backend, updated_at = excluded.updated_at",
      ),
      getPersona: db.prepare<[string]>("SELECT name FROM personas WHERE channel_id = ?"),
      setPersona: db.prepare(
        "INSERT INTO personas (channel_id, name, updated_at) VALUES (?, ?, ?) ON CONFLICT (channel_id) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at",
      ),
      getScene: db.prepare<[string]>("SELECT lines FROM scenes WHERE channel_id = ?"),
      setScene: db.prepare(
        "INSERT INTO scenes (channel_id, lines, updated_at) VALUES (?, ?, ?) ON CONFLICT (channel_id) DO UPDATE SET lines = excluded.lines, updated_at = excluded.updated_at",
      ),
      getWebhook: db.prepare<[string]>("SELECT webhook_id, token FROM webhooks WHERE channel_id = ?"),
      setWebhook: db.prepare(
        "INSERT INTO webhooks (channel_id, webhook_id, token, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (channel_id) DO UPDATE SET webhook_id = excluded.webhook_id, token = excluded.token, updated_at = excluded.updated_at",
      ),
      forgetWebhook: db.prepare("DELETE FROM webhooks WHERE channel_id = ?"),
      addPart: db.prepare("INSERT INTO webhook_parts (trigger_id, part, message_id, at) VALUES (?, ?, ?, ?) ON CONFLICT (trigger_id, part) DO UPDATE SET message_id = excluded.message_id, at = excluded.at"),
      parts: db.prepare<[string]>("SELECT message_id FROM webhook_parts WHERE trigger_id = ? ORDER BY part"),
      forgetParts: db.prepare("DELETE FROM webhook_parts WHERE trigger_id = ?"),
      forgetPartsIn: db.prepare("DELETE FROM webhook_parts WHERE trigger_id IN (SELECT message_id FROM accepted WHERE channel_id = ?)"),
      forgetPersona: db.prepare("DELETE FROM personas WHERE channel_id = ?"),
      forgetScene: db.prepare("DELETE FROM scenes WHERE channel_id = ?"),
      forgetOldParts: db.prepare("DELETE FROM webhook_parts WHERE at < ?"),
      probe: db.prepare("INSERT INTO probe (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at"),
      readProbe: db.prepare("SELECT (SELECT count(*) FROM (SELECT 1 FROM turns LIMIT 1)) + (SELECT count(*) FROM (SELECT 1 FROM accepted LIMIT 1)) AS n"),
      owner: db.prepare("SELECT pid, host, heartbeat_at FROM instance WHERE id = 1"),
      claim: db.prepare(
        "INSERT INTO instance (id, pid, host, heartbeat_at) VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, host = excluded.host, heartbeat_at = excluded.heartbeat_at",
      ),
      beat: db.prepare("UPDATE instance SET heartbeat_at = ? WHERE id = 1 AND pid = ? AND host = ?"),
      release: db.prepare("DELETE FROM instance WHERE id = 1 AND pid = ? AND host = ?"),
    };
  }

  loadWindow(channelId: string): Turn[] {
    return this.#read(() => (this.#q.window.all(channelId, this.#maxTurns) as TurnRow[]).map(turnOf));
  }

  accept({ channelId, authorId, turn, character, guildId, parentId }: AcceptedMessage): boolean {
    return this.#write("accept a message", () =>
      this.#db.transaction(() => {
        if (this.isKnown(turn.messageId)) return false;
        this.#q.accept.run(turn.messageId, channelId, authorId, turn.author, turn.text, turn.at, turn.tokens ?? null, character ?? null);
        if (guildId) this.#q.place.run(channelId, guildId, parentId ?? null);
        return true;
      })(),
    );
  }

  complete(channelId: string, answered: readonly Turn[], reply: Turn | null): void {
    const now = Date.now();
    this.#write("save a reply", () =>
      this.#db.transaction(() => {
        for (const t of reply ? [...answered, reply] : answered) {
          const answeredAuthors = t.answered ? JSON.stringify(t.answered) : null;
          this.#q.addTurn.run(channelId, t.author, t.text, t.fromFriend ? 1 : 0, t.at, t.messageId ?? null, t.tokens ?? null, t.authorId ?? null, answeredAuthors);
        }
        for (const t of answered) {
          if (!t.messageId) continue;
          this.#q.unaccept.run(t.messageId);
          this.#q.answer.run(t.messageId, now, channelId);
        }
        this.#q.trimTurns.run(channelId, channelId, this.#maxTurns);
        // Forgetting old ids is cheap but not free: do it now and then, not on every reply.
        if (++this.#saves % 500 === 1) this.#q.forgetOldAnswered.run(now - this.#answeredRetentionMs);
      })(),
    );
  }

  unanswered(): AcceptedMessage[] {
    return this.#read(() => this.#q.accepted.all() as AcceptedRow[]).map((r) => ({
      channelId: r.channel_id,
      authorId: r.author_id,
      turn: {
        author: r.author,
        text: r.text,
        fromFriend: false,
        at: r.at,
        messageId: r.message_id,
        authorId: r.author_id,
        ...(r.tokens !== null ? { tokens: r.tokens } : {}),
      },
      ...(r.character !== null ? { character: r.character } : {}),
    }));
  }

  drop(channelId: string, messageIds: readonly string[]): void {
    const now = Date.now();
    this.#write("drop unanswered messages", () =>
      this.#db.transaction(() => {
        for (const id of messageIds) {
          this.#q.unaccept.run(id);
          this.#q.answer.run(id, now, channelId);
        }
      })(),
    );
  }

  clearChannel(channelId: string): void {
    this.#write("forget a channel", () =>
      this.#db.transaction(() => {
        this.#q.clearTurns.run(channelId);
        this.drop(channelId, this.#acceptedIn(channelId));
      })(),
    );
  }

  forgetMessages(channelId: string, messageIds: readonly string[]): number {
    const now = Date.now();
    return this.#write("forget deleted messages", () =>
      this.#db.transaction(() => {
        let held = 0;
        for (const id of messageIds) {
          const rows = this.#q.forgetTurn.run(channelId, id).changes + this.#q.unacceptIn.run(channelId, id).changes;
          // Only the id stays, as answered: a replay of a deleted message is never answered.
          if (rows > 0) this.#q.answer.run(id, now, channelId);
          held += rows;
        }
        return held;
      })(),
    );
  }

  reviseMessage(channelId: string, messageId: string, text: string, tokens: number): number {
    return this.#write("save an edited message", () =>
      this.#db.transaction(() => this.#q.reviseAccepted.run(text, tokens, channelId, messageId).changes + this.#q.reviseTurn.run(text, tokens, channelId, messageId).changes)(),
    );
  }

  channelsOf(authorId: string): string[] {
    return this.#read(() => (this.#q.channelsOf.all(authorId, authorId, authorId) as { channel_id: string }[]).map(col));
  }

  forgetAuthor(channelId: string, authorId: string): ForgottenAuthor {
    return this.#write("forget a user", () =>
      this.#db.transaction(() => {
        const turns = this.#q.forgetAuthorTurns.run(channelId, authorId).changes;
        const replies = this.#q.forgetAnsweringTurns.run(channelId, authorId).changes;
        const waiting = (this.#q.acceptedOf.all(channelId, authorId) as { message_id: string }[]).map((r) => r.message_id);
        this.drop(channelId, waiting);
        return { turns, replies, unanswered: waiting.length };
      })(),
    );
  }

  channelsBefore(before: number): string[] {
    return this.#read(() => (this.#q.channelsBefore.all(before, before) as { channel_id: string }[]).map(col));
  }

  expire(channelId: string, before: number): number {
    return this.#write("forget old turns", () =>
      this.#db.transaction(() => {
        this.#q.expireAccepted.run(channelId, before);
        this.#q.expireAnswered.run(channelId, before);
        return this.#q.expireTurns.run(channelId, before).changes;
      })(),
    );
  }

  channelsUnder(id: string): string[] {
    return this.#read(() => (this.#q.channelsUnder.all(id, id) as { channel_id: string }[]).map(col));
  }

  places(): ChannelPlace[] {
    const rows = this.#read(() => this.#q.places.all() as { channel_id: string; guild_id: string; parent_id: string | null }[]);
    return rows.map((r) => ({ channelId: r.channel_id, guildId: r.guild_id, ...(r.parent_id ? { parentId: r.parent_id } : {}) }));
  }

  forgetChannel(channelId: string): void {
    this.#write("forget a deleted channel", () =>
      this.#db.transaction(() => {
        this.#q.clearTurns.run(channelId);
        this.#q.forgetPartsIn.run(channelId);
        this.#q.forgetAccepted.run(channelId);
        this.#q.forgetAnswered.run(channelId);
        this.#q.forgetBackend.run(channelId);
        this.#q.forgetPersona.run(channelId);
        this.#q.forgetScene.run(channelId);
        this.#q.forgetWebhook.run(channelId);
        this.#q.forgetPlace.run(channelId);
      })(),
    );
  }

  #acceptedIn(channelId: string): string[] {
    return (this.#q.acceptedIn.all(channelId) as { message_id: string }[]).map((r) => r.message_id);
  }

  isKnown(messageId: string): boolean {
    return this.#read(() => this.#q.isAnswered.get(messageId) !== undefined || this.#q.isAccepted.get(messageId) !== undefined);
  }

  getBackend(channelId: string): BackendName | undefined {
    const row = this.#read(() => this.#q.getBackend.get(channelId) as { backend: string } | undefined);
    return row && (BACKEND_NAMES as readonly string[]).includes(row.backend) ? (row.backend as BackendName) : undefined;
  }

  setBackend(channelId: string, backend: BackendName): void {
    this.#write("save the channel's backend", () => this.#q.setBackend.run(channelId, backend, Date.now()));
  }

  getPersona(channelId: string): string | undefined {
    return this.#read(() => (this.#q.getPersona.get(channelId) as { name: string } | undefined)?.name);
  }

  setPersona(channelId: string, name: string): void {
    this.#write("save the channel's persona", () => this.#q.setPersona.run(channelId, name, Date.now()));
  }

  getScene(channelId: string): number {
    return this.#read(() => (this.#q.getScene.get(channelId) as { lines: number } | undefined)?.lines ?? 0);
  }

  setScene(channelId: string, lines: number): void {
    this.#write("save the channel's scene setting", () => this.#q.setScene.run(channelId, lines, Date.now()));
  }

  /** The webhook Friend posts through in a channel (see WebhookStore). */
  getWebhook(channelId: string): WebhookCredentials | undefined {
    const row = this.#read(() => this.#q.getWebhook.get(channelId) as { webhook_id: string; token: string } | undefined);
    return row && { id: row.webhook_id, token: row.token };
  }

  setWebhook(channelId: string, webhook: WebhookCredentials | null): void {
    this.#write("save the channel's webhook", () => (webhook ? this.#q.setWebhook.run(channelId, webhook.id, webhook.token, Date.now()) : this.#q.forgetWebhook.run(channelId)));
  }

  beginWebhookPart(triggerId: string, part: number, messageId: string): void {
    const now = Date.now();
    this.#write("remember a begun reply", () => {
      this.#q.addPart.run(triggerId, part, messageId, now);
      // Catch-up never looks further back than a few days; what a crash left older is forgotten.
      if (++this.#saves % 500 === 1) this.#q.forgetOldParts.run(now - this.#answeredRetentionMs);
    });
  }

  webhookParts(triggerId: string): string[] {
    return this.#read(() => (this.#q.parts.all(triggerId) as { message_id: string }[]).map((r) => r.message_id));
  }

  forgetWebhookParts(triggerId: string): void {
    this.#write("forget a finished reply's parts", () => this.#q.forgetParts.run(triggerId));
  }

  /**
   * Whether the database answers queries and takes writes (for /healthz). After a failed write it
   * tries a tiny one, so health comes back as soon as the disk or lock does.
   */
  healthy(): boolean {
    try {
      if (!this.#db.open || this.#readFailure?.corrupt) return false;
      if (this.#readFailure) this.#read(() => this.#q.readProbe.get());
      if (this.#writeFailure) this.#write("probe", () => this.#q.probe.run(Date.now()));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Makes this process the Friend bot that owns the database, refusing (StoreError) when another
   * live one does: two bots on one file would answer every message twice. The owner says it is
   * alive every few seconds; a dead one (its process gone on this host, or silent for 20 s) is
   * taken over.
   */
  claimOwnership(path: string): void {
    const host = hostname();
    const now = Date.now();
    this.#db.transaction(() => {
      const owner = this.#q.owner.get() as { pid: number; host: string; heartbeat_at: number } | undefined;
      if (owner && owner.heartbeat_at > now - OWNER_STALE_MS && !(owner.host === host && (owner.pid === process.pid || !processAlive(owner.pid)))) {
        const ago = Math.max(0, Math.round((now - owner.heartbeat_at) / 1000));
        throw new StoreError(
          `FRIEND_DB_PATH=${path} is in use by another Friend (pid ${owner.pid} on ${owner.host}, alive ${ago} s ago). Stop that one first, or give this one its own FRIEND_DB_PATH.`,
        );
      }
      this.#q.claim.run(process.pid, host, now);
    })();
    this.#heartbeat = setInterval(() => {
      try {
        this.#q.beat.run(Date.now(), process.pid, host);
      } catch {
        // A locked or full database misses a beat; the owner is stale only after many.
      }
    }, HEARTBEAT_MS);
    this.#heartbeat.unref();
  }

  close(): void {
    if (this.#heartbeat) {
      clearInterval(this.#heartbeat);
      this.#heartbeat = undefined;
      try {
        this.#q.release.run(process.pid, hostname());
      } catch {
        // The next Friend takes over a silent owner anyway.
      }
    }
    if (this.#db.open) this.#db.close();
  }

  /** Runs a read, remembering whether reads work (for /healthz). */
  #read<T>(run: () => T): T {
    try {
      const result = run();
      if (this.#readFailure && !this.#readFailure.corrupt) this.#readFailure = null;
      return result;
    } catch (err) {
      this.#readFailure = { err: err as Error, corrupt: openFailure(err) === "corrupt" };
      throw err;
    }
  }

  /** Runs a write, remembering whether writes work; a failure becomes a StoreWriteError naming what was being written. */
  #write<T>(what: string, run: () => T): T {
    try {
      const result = run();
      this.#writeFailure = null;
      return result;
    } catch (err) {
      const failure = err instanceof StoreWriteError ? err : new StoreWriteError(what, err);
      this.#writeFailure = failure;
      throw failure;
    }
  }
}

/** Why a database could not be opened, from SQLite's or the file system's error code. */
export type OpenFailure = "corrupt" | "unwritable" | "full" | "locked" | "io";

/** Classifies an error from opening or migrating the database. Only "corrupt" may be moved aside. */
export function openFailure(err: unknown): OpenFailure {
  const code = String((err as { code?: unknown }).code ?? "");
  if (code === "SQLITE_NOTADB" || code.startsWith("SQLITE_CORRUPT") || /integrity check failed/.test((err as Error).message)) return "corrupt";
  if (code.startsWith("SQLITE_READONLY") || code.startsWith("SQLITE_CANTOPEN") || ["SQLITE_PERM", "SQLITE_AUTH", "EACCES", "EPERM", "EROFS"].includes(code)) return "unwritable";
  if (code === "SQLITE_FULL" || code === "ENOSPC" || code === "EDQUOT") return "full";
  if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")) return "locked";
  return "io";
}

/** What to tell the operator about a database that cannot be opened, by what is wrong. */
export function openFailureMessage(path: string, err: unknown): string {
  const reason = (err as Error).message;
  const uid = typeof process.getuid === "function" ? ` (Friend runs as uid ${process.getuid()})` : "";
  switch (openFailure(err)) {
    case "corrupt":
      return (
        `FRIEND_DB_PATH=${path} is not a readable Friend database (${reason}). It was left untouched. ` +
        "Restore a backup, or start once with --move-corrupt-db to move it aside and begin with empty state."
      );
    case "unwritable":
      return `FRIEND_DB_PATH=${path} cannot be written (${reason}). Check that the file and its folder belong to the user Friend runs as${uid} and are writable, and that the disk is not mounted read-only. The file was left untouched.`;
    case "full":
      return `FRIEND_DB_PATH=${path} cannot be written: the disk is full (${reason}). Free some space; the file was left untouched.`;
    case "locked":
      return `FRIEND_DB_PATH=${path} is locked by another process (${reason}). Is another Friend running on the same file?`;
    case "io":
      return `FRIEND_DB_PATH=${path} cannot be opened (${reason}). The file was left untouched.`;
  }
}

function openDatabase(path: string, moveCorruptAside: boolean, busyTimeoutMs: number): Database.Database {
  try {
    if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
    return migrate(new Database(path), path, busyTimeoutMs);
  } catch (err) {
    if (err instanceof StoreError) throw err; // a newer schema is not corruption: never move it
    if (!moveCorruptAside || path === ":memory:" || !existsSync(path) || openFailure(err) !== "corrupt") {
      throw new StoreError(openFailureMessage(path, err), { cause: err });
    }
    const aside = `${path}.corrupt-${new Date().toISOString().replace(/[:.]/g, "-")}`;
    try {
      renameSync(path, aside);
      for (const suffix of ["-wal", "-shm"]) if (existsSync(path + suffix)) renameSync(path + suffix, aside + suffix);
    } catch (moveErr) {
      throw new StoreError(`FRIEND_DB_PATH=${path} is not a readable Friend database, and it could not be moved aside to ${aside}: ${(moveErr as Error).message}. Move it by hand.`, { cause: moveErr });
    }
    console.error(`Moved the unreadable database ${path} to ${aside}; starting with empty state.`);
    return migrate(new Database(path), path, busyTimeoutMs);
  }
}

/**
 * How long start-up waits for another process's start-up on the same file (its WAL switch or
 * migrations); at run time a write waits only `busyTimeoutMs`, on the event loop.
 */
const OPEN_BUSY_TIMEOUT_MS = 10_000;

function migrate(db: Database.Database, path: string, busyTimeoutMs: number): Database.Database {
  try {
    db.pragma(`busy_timeout = ${OPEN_BUSY_TIMEOUT_MS}`);
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = NORMAL");
    const check = db.pragma("quick_check", { simple: true });
    if (check !== "ok") throw new Error(`integrity check failed: ${String(check)}`);
    // The schema version is read inside the write transaction: another process starting at the
    // same moment migrates first, and this one then finds nothing left to do.
    db.transaction(() => {
      const version = db.pragma("user_version", { simple: true }) as number;
      if (version > MIGRATIONS.length) {
        throw new StoreError(`FRIEND_DB_PATH=${path} was written by a newer Friend (schema ${version}, this one knows ${MIGRATIONS.length}). Upgrade Friend, or point FRIEND_DB_PATH elsewhere.`);
      }
      if (version === MIGRATIONS.length) return;
      for (let v = version; v < MIGRATIONS.length; v++) db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${MIGRATIONS.length}`);
    }).immediate();
    db.pragma(`busy_timeout = ${busyTimeoutMs}`);
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}
