import type { Logger } from "pino";
import { LocalBackend } from "./backends/local.ts";
import { Backends, type LocalBackendFactory } from "./backends/registry.ts";
import type { Config } from "./config/env.ts";
import { Conversation } from "./conversation/conversation.ts";
import type { ConversationEvent } from "./conversation/events.ts";
import { SqliteStore } from "./store/sqlite.ts";

export interface EngineParts {
  /** Move an unreadable database aside instead of refusing to start (the --move-corrupt-db flag). */
  moveCorruptDb?: boolean;
  /** Replaces the llama.cpp backend built from config.local (for tests of the routing alone). */
  makeLocal?: LocalBackendFactory;
  /** Replaces the store opened from config.dbPath (for tests that make its writes fail). */
  store?: SqliteStore;
  onEvent?: (event: ConversationEvent) => void;
}

/** The conversation engine, whatever its front end: durable state, the backends and the channel sessions. */
export interface Engine {
  store: SqliteStore;
  backends: Backends;
  conversation: Conversation;
  /**
   * Lets replies in flight finish for up to `graceMs`, saving the local channels' KV states
   * meanwhile, then releases the backends and the store.
   */
  close(graceMs: number): Promise<void>;
}

/** Wires config → store → backends → conversation: shared by the Discord bot and `friend chat`. */
export function createEngine(config: Config, logger: Logger, parts: EngineParts = {}, options: { userMessagesPerMinute?: number } = {}): Engine {
  const store = parts.store ?? new SqliteStore({ path: config.dbPath, moveCorruptAside: parts.moveCorruptDb });
  const backends = new Backends(config, logger, parts.makeLocal ?? (() => new LocalBackend({ ...config.local, logger })));
  const conversation = new Conversation({
    settings: config.settings,
    store,
    backend: (name) => backends.get(name),
    backends: () => backends.created(),
    defaultBackend: config.defaultBackend,
    // The local backend serves as many channels at once as its context has sequences.
    concurrency: { openai: config.settings.limits.concurrency, local: config.local.sequences },
    userMessagesPerMinute: options.userMessagesPerMinute ?? config.userMessagesPerMinute,
    retentionMs: config.retentionDays * 86_400_000,
    logger,
    onEvent: parts.onEvent,
  });
  // Old turns go at start-up, before catch-up or the first prompt, and then hourly.
  conversation.startRetention();
  return {
    store,
    backends,
    conversation,
    async close(graceMs) {
      // Within the same grace: a restart then finds the channels warm (the most recently answered first).
      const deadlineAt = Date.now() + graceMs;
      const saving = Promise.allSettled(backends.created().map((b) => b.saveState?.(deadlineAt)));
      await conversation.close(graceMs);
      await saving;
      await backends.close();
      store.close();
    },
  };
}
