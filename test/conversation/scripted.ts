import { pino } from "pino";
import { loadSettings, type Settings } from "../../src/config/settings.ts";
import { Conversation, type ConversationOptions, type IncomingMessage } from "../../src/conversation/conversation.ts";
import type { ConversationEvent } from "../../src/conversation/events.ts";
import type { ReplySink } from "../../src/conversation/session.ts";
import type { ConversationStore } from "../../src/conversation/store.ts";
import type { CastMember } from "../../src/core/cast.ts";
import type { Backend, BackendInfo, BackendName, GenerateRequest, GenerationStats } from "../../src/core/backend.ts";
import { SqliteStore } from "../../src/store/sqlite.ts";

/** A promise with its resolve and reject in hand, to decide an ordering from the test. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (err: unknown) => void } {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

/** One generation a ScriptedBackend was asked for; the test says what the model streams and when it ends. */
export class ScriptedGeneration {
  readonly #chunks: (string | { end: GenerationStats | undefined } | { fail: unknown })[] = [];
  #wake: (() => void) | null = null;
  /** Set once the consumer stopped reading (the cleaner cut, a deadline, a shutdown). */
  returned = false;

  constructor(readonly request: GenerateRequest) {}

  /** The text of the conversation the backend was sent, as `author: text` lines. */
  get prompt(): string[] {
    return this.request.turns.map((t) => `${t.author}: ${t.text}`);
  }

  say(...chunks: string[]): this {
    this.#chunks.push(...chunks);
    this.#notify();
    return this;
  }

  end(stats?: GenerationStats): void {
    this.#chunks.push({ end: stats });
    this.#notify();
  }

  fail(err: unknown): void {
    this.#chunks.push({ fail: err });
    this.#notify();
  }

  async *stream(honourSignal: boolean): AsyncGenerator<string, GenerationStats | void, undefined> {
    try {
      for (;;) {
        const next = this.#chunks.shift();
        if (next === undefined) {
          if (honourSignal && this.request.signal.aborted) return; // like the openai SDK: ends quietly
          await new Promise<void>((resolve) => {
            this.#wake = resolve;
            if (honourSignal) this.request.signal.addEventListener("abort", () => resolve(), { once: true });
          });
          continue;
        }
        if (typeof next === "string") yield next;
        else if ("end" in next) return next.end;
        else throw next.fail;
      }
    } finally {
      this.returned = true;
    }
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }
}

/**
 * A backend whose every generation the test scripts, in process. `honourSignal: false` models a
 * backend that ignores its abort signal altogether (it never answers).
 */
export class ScriptedBackend implements Backend {
  readonly generations: ScriptedGeneration[] = [];
  readonly resets: string[] = [];
  #waiters: ((g: ScriptedGeneration) => void)[] = [];
  prepareGate: Promise<void> | null = null;
  /** What describe() reports while getting ready. */
  progress: BackendInfo["progress"] = undefined;

  constructor(
    readonly name: BackendName,
    private readonly options: { honourSignal?: boolean } = {},
  ) {}

  describe() {
    return { backend: this.name, model: `scripted-${this.name}`, loaded: !this.progress, ...(this.progress ? { progress: this.progress } : {}) };
  }

  async prepare(): Promise<void> {
    await this.prepareGate;
  }

  generate(request: GenerateRequest): AsyncGenerator<string, GenerationStats | void, undefined> {
    const generation = new ScriptedGeneration(request);
    this.generations.push(generation);
    const waiter = this.#waiters.shift();
    waiter?.(generation);
    return generation.stream(this.options.honourSignal ?? true);
  }

  /** The `n`th generation (0-based), once it has been asked for. */
  async generation(n: number): Promise<ScriptedGeneration> {
    while (this.generations.length <= n) {
      await new Promise<ScriptedGeneration>((resolve) => this.#waiters.push(resolve));
    }
    return this.generations[n]!;
  }

  resetChannel(channelId: string): void {
    this.resets.push(channelId);
  }

  async close(): Promise<void> {}
}

/** A sink that records what the user would see, in order; `finish` can be held or made to fail. */
export class RecordingSink implements ReplySink {
  readonly events: string[] = [];
  readonly finished = deferred<string>();
  finishGate: Promise<void> | null = null;
  failFinish: Error | null = null;

  async typing(): Promise<void> {
    this.events.push("typing");
  }

  async update(text: string): Promise<void> {
    this.events.push(`update:${text}`);
  }

  async finish(text: string): Promise<void> {
    await this.finishGate;
    if (this.failFinish) {
      this.events.push(`finish-failed:${text}`);
      throw this.failFinish;
    }
    this.events.push(`finish:${text}`);
    this.finished.resolve(text);
  }

  async abandon(text: string): Promise<void> {
    this.events.push(`abandon:${text}`);
  }

  async notice(text: string): Promise<void> {
    this.events.push(`notice:${text}`);
  }

  /** Scene lines posted, as `Name: text`; each waits for `sceneGate` when set. */
  readonly scene: string[] = [];
  sceneGate: Promise<void> | null = null;
  /** Settles each time a scene line starts posting. */
  onSceneLine: (() => void) | null = null;

  async sceneLine(character: CastMember, text: string): Promise<void> {
    this.onSceneLine?.();
    await this.sceneGate;
    this.scene.push(`${character.name}: ${text}`);
  }

  /** Who each turn spoke as (speakAs), kept apart from what the user saw. */
  readonly speakers: string[] = [];

  speakAs(character: CastMember): void {
    this.speakers.push(character.name);
  }

  async discard(): Promise<void> {
    this.events.push("discard");
  }

  /** What was posted in the end, if anything. */
  get posted(): string | undefined {
    return this.events.findLast((e) => e.startsWith("finish:"))?.slice("finish:".length);
  }
}

let nextId = 100_000_000_000_000_000n;

export function message(channelId: string, text: string, author = "Alice"): IncomingMessage & { authorId: string } {
  nextId++;
  return { id: String(nextId), channelId, authorId: `user-${author}`, authorName: author, text, at: Date.now() };
}

export interface Rig {
  conversation: Conversation;
  openai: ScriptedBackend;
  local: ScriptedBackend;
  store: ConversationStore & SqliteStore;
  settings: Settings;
  events: ConversationEvent[];
}

/** A Conversation over scripted backends and a real in-memory SQLite store, with no Discord. */
export function rig(
  options: { settings?: (s: Settings) => void; openai?: ScriptedBackend; store?: SqliteStore; concurrency?: Partial<ConversationOptions["concurrency"]>; userMessagesPerMinute?: number; retentionMs?: number } = {},
): Rig {
  const settings = loadSettings();
  settings.generation.streamEditIntervalMs = 0;
  options.settings?.(settings);
  const openai = options.openai ?? new ScriptedBackend("openai");
  const local = new ScriptedBackend("local");
  const store = (options.store ?? new SqliteStore({ path: ":memory:" })) as Rig["store"];
  const events: ConversationEvent[] = [];
  const conversation = new Conversation({
    settings,
    store,
    backend: (name) => (name === "openai" ? openai : local),
    backends: () => [openai, local],
    defaultBackend: "openai",
    concurrency: { openai: 4, local: 1, ...options.concurrency },
    userMessagesPerMinute: options.userMessagesPerMinute ?? 1000,
    retentionMs: options.retentionMs,
    logger: pino({ enabled: false }),
    onEvent: (e) => events.push(e),
  });
  return { conversation, openai, local, store, settings, events };
}

/** A real in-memory store whose named methods throw while `failing` has them. */
export function flakyStore(): { store: SqliteStore; real: SqliteStore; failing: Set<string> } {
  const real = new SqliteStore({ path: ":memory:" });
  const failing = new Set<string>();
  const store = new Proxy(real, {
    get(target, key) {
      const value = Reflect.get(target, key, target);
      if (typeof key === "string" && failing.has(key)) {
        return () => {
          throw Object.assign(new Error(`${key}: database is locked`), { code: "SQLITE_BUSY" });
        };
      }
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { store, real, failing };
}
