/**
 * Channels' evaluated KV states on disk. A channel whose sequence went to another channel, or that
 * speaks again after a restart, loads its state instead of evaluating its whole window again.
 *
 * - Every state is filed under the key of what it is valid for (`StateKey`). node-llama-cpp warns
 *   that loading a state written for another model can crash the process, so a state is offered
 *   only under the exact key it was written with.
 * - Writes are atomic: the state and then its record go to temporary files that are renamed into
 *   place. The record holds the state's size and SHA-256, so a torn, truncated or altered state is
 *   found before llama.cpp reads it, deleted, and never loaded.
 * - A disk budget over every key's files: the least recently used states go first, so states of a
 *   model no longer in use are the first to go.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readdir, readFile, rename, rm, stat, utimes } from "node:fs/promises";
import { basename, join } from "node:path";
import { pipeline } from "node:stream/promises";
import type { Logger } from "pino";

/** What a saved state is valid for: loading it under any other key is never tried. */
export interface StateKey {
  /** The model file: its size and a hash of its layout and a sample of its weights (see model-identity.ts). */
  model: string;
  /** The adapter file's identity and its scale, or null for the base model alone. */
  adapter: { file: string; scale: number } | null;
  contextSize: number;
  kvCacheType: string;
  /** The llama.cpp binary: node-llama-cpp's version, llama.cpp's release, the build and its options. */
  binary: string;
}

/** What a saved state stands for, kept next to it. */
export interface StateRecord {
  format: typeof RECORD_FORMAT;
  key: StateKey;
  channelId: string;
  /** The tokens the state holds, so the part of a new prompt after their common prefix is all that is evaluated. */
  tokens: number[];
  /** `at` of the oldest turn in the saved prompt, so the channel's next prompt starts at the same turn. */
  firstTurnAt?: number;
  bytes: number;
  sha256: string;
}

export interface StateCacheStats {
  files: number;
  bytes: number;
  budgetBytes: number;
}

export interface StateCacheOptions {
  dir: string;
  /** Disk for every key's states together; the least recently used go beyond it. */
  budgetBytes: number;
  key: StateKey;
  log: Logger;
}

const RECORD_FORMAT = 1;
const STATE = ".state";
const RECORD = ".json";
const TEMP = ".tmp";

interface Entry {
  /** The state file and its record; both are deleted together. */
  state: string;
  record: string;
  bytes: number;
  usedAt: number;
}

export class StateCache {
  readonly #dir: string;
  readonly #key: StateKey;
  readonly #keyDir: string;
  readonly #budget: number;
  readonly #log: Logger;
  /** Every state in the cache folder, any key: for the budget. */
  readonly #entries = new Map<string, Entry>();
  /** This key's records, by channel. */
  readonly #records = new Map<string, StateRecord>();
  /** Each channel's saves and drops run one after another, so a drop is never overtaken by a save begun before it. */
  readonly #queues = new Map<string, Promise<unknown>>();

  private constructor(options: StateCacheOptions) {
    this.#dir = options.dir;
    this.#key = options.key;
    this.#keyDir = join(options.dir, keyId(options.key));
    this.#budget = options.budgetBytes;
    this.#log = options.log;
  }

  /** Opens the cache folder: deletes temporary files a crash left, and indexes the states there. */
  static async open(options: StateCacheOptions): Promise<StateCache> {
    const cache = new StateCache(options);
    await mkdir(cache.#keyDir, { recursive: true });
    await cache.#scan();
    await cache.#enforceBudget();
    return cache;
  }

  stats(): StateCacheStats {
    let bytes = 0;
    for (const e of this.#entries.values()) bytes += e.bytes;
    return { files: this.#entries.size, bytes, budgetBytes: this.#budget };
  }

  /** The channel's saved state under this key, once any save in progress for it has finished; not yet verified. */
  async find(channelId: string): Promise<StateRecord | undefined> {
    await this.#queues.get(channelId)?.catch(() => undefined);
    return this.#records.get(channelId);
  }

  /**
   * The state file of `record`, if it is still whole: its size and SHA-256 as recorded. A state
   * that fails is deleted. Marks it used, for the budget.
   */
  async verify(record: StateRecord): Promise<string | undefined> {
    const { state, record: recordPath } = this.#paths(record.channelId);
    try {
      const info = await stat(state);
      if (info.size !== record.bytes) throw new Error(`its size is ${info.size} bytes, not the ${record.bytes} recorded`);
      const sha256 = await fileSha256(state);
      if (sha256 !== record.sha256) throw new Error("its contents differ from what was saved");
    } catch (err) {
      this.#log.warn({ channelId: record.channelId, reason: (err as Error).message }, "saved channel state is damaged; evaluating instead");
      await this.drop(record.channelId);
      return undefined;
    }
    const now = Date.now();
    const entry = this.#entries.get(state);
    if (entry) entry.usedAt = now;
    await utimes(recordPath, now / 1000, now / 1000).catch(() => undefined);
    return state;
  }

  /**
   * Saves a channel's state: `write` writes it to the path it is given (a temporary file), which
   * is then made durable and renamed into place, and then its record. Returns the state's size,
   * or undefined when it was not kept (a failed write, a drop meanwhile, or a state over the budget).
   */
  save(channelId: string, info: { tokens: readonly number[]; firstTurnAt?: number }, write: (path: string) => Promise<void>): Promise<number | undefined> {
    return this.#serial(channelId, async () => {
      const { state, record } = this.#paths(channelId);
      const tmp = `${state}.${randomBytes(4).toString("hex")}${TEMP}`;
      try {
        await write(tmp);
        await fsyncFile(tmp);
        const bytes = (await stat(tmp)).size;
        if (bytes > this.#budget) {
          await rm(tmp, { force: true });
          await this.#remove(channelId);
          return undefined;
        }
        const saved: StateRecord = {
          format: RECORD_FORMAT,
          key: this.#key,
          channelId,
          tokens: [...info.tokens],
          ...(info.firstTurnAt === undefined ? {} : { firstTurnAt: info.firstTurnAt }),
          bytes,
          sha256: await fileSha256(tmp),
        };
        await rename(tmp, state);
        await writeFileAtomic(record, JSON.stringify(saved));
        this.#records.set(channelId, saved);
        this.#entries.set(state, { state, record, bytes, usedAt: Date.now() });
        await this.#enforceBudget(state);
        return this.#records.has(channelId) ? bytes : undefined;
      } catch (err) {
        await rm(tmp, { force: true }).catch(() => undefined);
        this.#log.warn({ channelId, err }, "could not save a channel's state");
        return undefined;
      }
    });
  }

  /**
   * Deletes the channel's saved states (/reset, /forget, a deleted message, retention): under this
   * key, and under every other (written for another model, adapter or context, they hold the same
   * words). None is ever loaded again.
   */
  drop(channelId: string): Promise<void> {
    return this.#serial(channelId, async () => {
      this.#records.delete(channelId);
      const name = fileName(channelId) + STATE;
      for (const path of this.#entries.keys()) if (basename(path) === name) this.#entries.delete(path);
      await dropSavedStates(this.#dir, channelId);
    });
  }

  /** Deletes the channel's state under this key (the budget, a state that failed its check). */
  async #remove(channelId: string): Promise<void> {
    const { state, record } = this.#paths(channelId);
    this.#records.delete(channelId);
    this.#entries.delete(state);
    // The record first: a state without a record is never offered.
    await rm(record, { force: true });
    await rm(state, { force: true });
  }

  #serial<T>(channelId: string, run: () => Promise<T>): Promise<T> {
    const before = this.#queues.get(channelId) ?? Promise.resolve();
    const next = before.catch(() => undefined).then(run);
    this.#queues.set(channelId, next);
    void next.finally(() => {
      if (this.#queues.get(channelId) === next) this.#queues.delete(channelId);
    }).catch(() => undefined);
    return next;
  }

  #paths(channelId: string): { state: string; record: string } {
    const name = fileName(channelId);
    return { state: join(this.#keyDir, name + STATE), record: join(this.#keyDir, name + RECORD) };
  }

  async #scan(): Promise<void> {
    for (const sub of await readdir(this.#dir, { withFileTypes: true })) {
      if (!sub.isDirectory()) continue;
      const dir = join(this.#dir, sub.name);
      const names = await readdir(dir);
      for (const name of names) {
        const path = join(dir, name);
        if (name.endsWith(TEMP)) {
          await rm(path, { force: true });
          continue;
        }
        if (!name.endsWith(RECORD)) continue;
        const state = path.slice(0, -RECORD.length) + STATE;
        let parsed: StateRecord | undefined;
        let usedAt = 0;
        let bytes = 0;
        try {
          parsed = JSON.parse(await readFile(path, "utf8")) as StateRecord;
          usedAt = (await stat(path)).mtimeMs;
          bytes = (await stat(state)).size;
        } catch {
          parsed = undefined;
        }
        if (!parsed || parsed.format !== RECORD_FORMAT || typeof parsed.channelId !== "string" || !Array.isArray(parsed.tokens)) {
          // A record that cannot be read stands for nothing; its state goes with it.
          await rm(path, { force: true });
          await rm(state, { force: true });
          continue;
        }
        this.#entries.set(state, { state, record: path, bytes, usedAt });
        if (dir === this.#keyDir && sameKey(parsed.key, this.#key)) this.#records.set(parsed.channelId, parsed);
      }
      // A state whose record is gone is never offered; delete it so it counts against nothing.
      for (const name of names) {
        const path = join(dir, name);
        if (name.endsWith(STATE) && !this.#entries.has(path)) await rm(path, { force: true });
      }
    }
  }

  /** Deletes least recently used states until the cache fits its budget; `keep` only if it alone is over. */
  async #enforceBudget(keep?: string): Promise<void> {
    let total = this.stats().bytes;
    if (total <= this.#budget) return;
    const byAge = [...this.#entries.values()].sort((a, b) => (a.state === keep ? 1 : b.state === keep ? -1 : a.usedAt - b.usedAt));
    for (const entry of byAge) {
      if (total <= this.#budget) break;
      total -= entry.bytes;
      this.#entries.delete(entry.state);
      for (const [channelId, record] of this.#records) {
        if (this.#paths(channelId).state === entry.state && record) this.#records.delete(channelId);
      }
      await rm(entry.record, { force: true });
      await rm(entry.state, { force: true });
      this.#log.debug({ file: entry.state, bytes: entry.bytes }, "saved channel state dropped for the disk budget");
    }
  }
}

/** Channel ids may hold any character (`cli:NAME`): a state's file name is a hash of its channel's. */
function fileName(channelId: string): string {
  return createHash("sha256").update(channelId).digest("hex").slice(0, 32);
}

/** The folder name of a key: a hash of all of it. */
export function keyId(key: StateKey): string {
  return createHash("sha256").update(canonical(key)).digest("hex").slice(0, 24);
}

function sameKey(a: unknown, b: StateKey): boolean {
  return typeof a === "object" && a !== null && canonical(a) === canonical(b);
}

/** JSON with sorted keys, so equal keys hash equally whatever order their fields were written in. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

async function fileSha256(path: string): Promise<string> {
  const hash = createHash("sha256");
  await pipeline(createReadStream(path), hash);
  return hash.digest("hex");
}

async function fsyncFile(path: string): Promise<void> {
  const file = await open(path, "r+");
  try {
    await file.sync();
  } finally {
    await file.close();
  }
}

async function writeFileAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.${randomBytes(4).toString("hex")}${TEMP}`;
  const file = await open(tmp, "w");
  try {
    await file.writeFile(text);
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(tmp, path);
}

/**
 * Deletes a channel's saved states under every key, without opening a cache (the model is not
 * loaded yet): /reset must leave nothing of the channel on disk either way.
 */
export async function dropSavedStates(dir: string, channelId: string): Promise<void> {
  const name = fileName(channelId);
  let keys: string[];
  try {
    keys = await readdir(dir);
  } catch {
    return; // no folder, no states
  }
  for (const key of keys) {
    await rm(join(dir, key, name + RECORD), { force: true });
    await rm(join(dir, key, name + STATE), { force: true });
  }
}
