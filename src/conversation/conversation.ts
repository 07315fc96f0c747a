import type { Logger } from "pino";
import type { Settings } from "../config/settings.ts";
import { BackendError, type Backend, type BackendName } from "../core/backend.ts";
import { Admission } from "./admission.ts";
import type { ConversationEvent, DropReason } from "./events.ts";
import { FloodGate } from "./flood.ts";
import { speakerName } from "../backends/prompt.ts";
import { ChannelSession, type ReplySink, type SessionContext } from "./session.ts";
import type { AcceptedMessage, ConversationStore } from "./store.ts";
import { countTokens } from "../core/tokens.ts";

/** A message that addresses Friend, already stripped of Discord specifics. */
export interface IncomingMessage {
  id: string;
  channelId: string;
  /** Who sent it, for flood control. */
  authorId: string;
  authorName: string;
  text: string;
  at: number;
}

/**
 * `slowed`: the sender is over their rate and got the one slow-down reply; `ignored`: and is now
 * ignored; `deferred`: Friend is shutting down, so the message is kept for catch-up at the next start.
 */
export type SubmitResult = "started" | "queued" | "duplicate" | "dropped" | "slowed" | "ignored" | "deferred";

export interface ConversationOptions {
  settings: Settings;
  store: ConversationStore;
  /** The backend serving one name (created on first use). */
  backend: (name: BackendName) => Backend;
  /** Every backend created so far. */
  backends: () => Iterable<Backend>;
  defaultBackend: BackendName;
  /** Concurrent generations per backend; waiting on one never delays the other. */
  concurrency: Record<BackendName, number>;
  /** Messages a user may send per minute before being slowed down. */
  userMessagesPerMinute: number;
  logger: Logger;
  onEvent?: (event: ConversationEvent) => void;
}

/**
 * Friend's conversations: a bounded registry of channel sessions (idle ones evicted, least recently
 * used first), flood control, and per-backend admission. Everything about one channel happens in
 * its `ChannelSession`.
 */
export class Conversation {
  /** In least-recently-used order: a session is moved to the end whenever it is touched. */
  readonly #sessions = new Map<string, ChannelSession>();
  readonly #flood: FloodGate;
  readonly #shutdown = new AbortController();
  readonly #context: SessionContext;
  #closing = false;

  constructor(private readonly options: ConversationOptions) {
    this.#flood = new FloodGate(options.userMessagesPerMinute);
    this.#context = {
      settings: options.settings,
      store: options.store,
      backend: options.backend,
      backends: options.backends,
      defaultBackend: options.defaultBackend,
      admission: new Admission(options.concurrency),
      shutdown: this.#shutdown.signal,
      closing: () => this.#closing,
      logger: options.logger,
      emit: (event) => this.#emit(event),
      storeFailed: (err, log) => {
        log.error({ err }, "database write failed; carrying on without it");
        this.#emit({ type: "store_error" });
      },
    };
  }

  /** Takes a message for an answer: durable from here on. Never throws: a user's message must not crash Friend. */
  submit(message: IncomingMessage, sink: ReplySink): SubmitResult {
    const session = this.#session(message.channelId);
    const backend = session.backend;
    this.#emit({ type: "seen", backend });
    const drop = (reason: DropReason, result: SubmitResult = "dropped"): SubmitResult => {
      this.#emit({ type: "dropped", backend, reason });
      return result;
    };
    if (session.has(message.id)) return drop("duplicate", "duplicate");
    const { persona, window } = this.options.settings;
    if (!this.#closing) {
      const verdict = this.#flood.check(message.authorId);
      if (verdict === "ignore") return drop("flood", "ignored");
      if (verdict === "warn") {
        void sink.finish(persona.slowDownReply).catch((err) => this.options.logger.warn({ err }, "could not post the slow-down reply"));
        return drop("flood", "slowed");
      }
    }
    const text = message.text.length > window.maxInputChars ? `${message.text.slice(0, window.maxInputChars)}…` : message.text;
    const accepted: AcceptedMessage = {
      channelId: message.channelId,
      authorId: message.authorId,
      turn: { author: speakerName(message.authorName, persona.name), text, fromFriend: false, at: message.at, messageId: message.id, tokens: countTokens(text) },
    };
    try {
      if (!this.options.store.accept(accepted)) return drop("duplicate", "duplicate");
    } catch (err) {
      this.#context.storeFailed(err, this.options.logger.child({ msgId: message.id, channel: message.channelId }));
    }
    if (this.#closing) {
      drop("shutting_down");
      return "deferred";
    }
    return this.#enqueue(session, accepted, sink);
  }

  /** Answers a message accepted before a restart (catch-up); it is already durable. */
  resume(message: AcceptedMessage, sink: ReplySink): SubmitResult {
    if (this.#closing) return "dropped";
    const session = this.#session(message.channelId);
    if (session.has(message.turn.messageId)) return "duplicate";
    return this.#enqueue(session, message, sink);
  }

  /** Forgets a channel's conversation (see ChannelSession.reset); returns how many turns were forgotten. */
  reset(channelId: string): number {
    const session = this.#session(channelId);
    const { turns, dropped } = session.reset();
    for (const _ of dropped) this.#emit({ type: "dropped", backend: session.backend, reason: "reset" });
    return turns;
  }

  /** Ends the channel's reply in flight where it stands (see ChannelSession.stopReply). */
  stopReply(channelId: string): boolean {
    return this.#sessions.get(channelId)?.stopReply() ?? false;
  }

  /** Settles once the channel has no turn running. */
  idle(channelId: string): Promise<void> {
    return this.#sessions.get(channelId)?.idle() ?? Promise.resolve();
  }

  backendOf(channelId: string): BackendName {
    return this.#session(channelId).backend;
  }

  setBackend(channelId: string, backend: BackendName): void {
    this.#session(channelId).setBackend(backend);
  }

  /** The channel's window size, for /status and /reset. */
  windowSize(channelId: string): { turns: number; tokens: number } {
    return this.#session(channelId).windowSize();
  }

  /** Messages waiting for a reply, across channels (read by the metrics scrape, not per message). */
  get queueDepth(): number {
    let depth = 0;
    for (const session of this.#sessions.values()) depth += session.pendingCount;
    return depth;
  }

  /** Channels held in memory. */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  /**
   * Graceful stop: takes no new messages, lets replies in flight finish and be posted for up to
   * `graceMs`, then stops the rest (their messages stay unanswered, for catch-up at the next start).
   */
  async close(graceMs: number): Promise<void> {
    this.#closing = true;
    const idle = Promise.allSettled([...this.#sessions.values()].map((s) => s.idle()));
    const timer = setTimeout(() => this.#shutdown.abort(new BackendError("aborted", "Friend is shutting down.")), graceMs);
    await idle;
    clearTimeout(timer);
  }

  #enqueue(session: ChannelSession, message: AcceptedMessage, sink: ReplySink): SubmitResult {
    const { result, dropped } = session.enqueue({ turn: message.turn, sink });
    if (dropped) {
      this.#emit({ type: "dropped", backend: session.backend, reason: "queue_full" });
      try {
        this.options.store.drop([dropped.turn.messageId]);
      } catch (err) {
        this.#context.storeFailed(err, this.options.logger.child({ channel: session.id }));
      }
    }
    return result;
  }

  #session(channelId: string): ChannelSession {
    let session = this.#sessions.get(channelId);
    if (session) {
      this.#sessions.delete(channelId);
    } else {
      session = new ChannelSession(channelId, this.#context);
      this.#evictIdle();
    }
    this.#sessions.set(channelId, session);
    return session;
  }

  /** Keeps memory bounded: the least recently used idle channels are forgotten (their state stays in the store). */
  #evictIdle(): void {
    let excess = this.#sessions.size + 1 - this.options.settings.limits.maxActiveChannels;
    for (const [id, session] of this.#sessions) {
      if (excess <= 0) break;
      if (session.busy) continue;
      this.#sessions.delete(id);
      excess--;
    }
  }

  #emit(event: ConversationEvent): void {
    try {
      this.options.onEvent?.(event);
    } catch (err) {
      this.options.logger.warn({ err }, "conversation event listener failed");
    }
  }
}
