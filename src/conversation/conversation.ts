import type { Logger } from "pino";
import type { Settings } from "../config/settings.ts";
import { BackendError, type Backend, type BackendName } from "../core/backend.ts";
import type { CastMember } from "../core/cast.ts";
import { Admission } from "./admission.ts";
import type { ConversationEvent, DropReason } from "./events.ts";
import { FloodGate } from "./flood.ts";
import { speakerName } from "../core/speakers.ts";
import { DurableWrites } from "./durable.ts";
import { ChannelSession, type ReplySink, type SessionContext } from "./session.ts";
import type { AcceptedMessage, ChannelPlace, ConversationStore } from "./store.ts";
import { countTokens, truncateToTokens } from "../core/tokens.ts";

/** A message that addresses Friend, already stripped of Discord specifics. */
export interface IncomingMessage {
  id: string;
  channelId: string;
  /** Who sent it, for flood control. */
  authorId: string;
  authorName: string;
  text: string;
  at: number;
  /** It replies to a character's message: that character answers it, whoever the channel's persona is. */
  character?: string;
  /** The server the channel belongs to (none in a DM), and a thread's parent channel. */
  guildId?: string;
  parentId?: string;
}

/** What /forget removed, across channels, and whether the store has forgotten all of it yet. */
export interface Forgotten {
  channels: number;
  turns: number;
  replies: number;
  unanswered: number;
  /** Every removal is in the store (else some wait in the write queue, retried). */
  durable: boolean;
  /** The store could not say where the user's words are: only channels in memory were looked at. */
  partial: boolean;
}

/** How often retention looks for turns past their time. */
const RETENTION_CHECK_MS = 3600_000;

/** What /reset adds when the database could not record the reset yet. */
export const NOT_DURABLE_YET =
  "(The database can't be written right now, so I'll keep trying to make this stick. If I restart before it works, the old conversation may come back.)";

/** After the grace period, how long the drain may take to replace replies cut short before close() returns anyway. */
const CLOSE_MS = 1000;

/** A user's text cut to the input bounds: first by characters (cheap), then by tokens; with its cl100k count, measured once. */
export function fitInput(text: string, maxChars: number, maxTokens: number): { text: string; trimmed: boolean; tokens: number } {
  const byChars = text.length > maxChars ? text.slice(0, maxChars) : text;
  const tokens = countTokens(byChars);
  if (byChars === text && tokens <= maxTokens) return { text, trimmed: false, tokens };
  const cut = `${tokens <= maxTokens ? byChars : truncateToTokens(byChars, maxTokens)}…`;
  return { text: cut, trimmed: true, tokens: countTokens(cut) };
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
  /** Turns older than this are forgotten (see startRetention); unset keeps them. */
  retentionMs?: number;
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
  readonly #writes: DurableWrites;
  #retention: NodeJS.Timeout | undefined;
  #closing = false;

  constructor(private readonly options: ConversationOptions) {
    this.#flood = new FloodGate(options.userMessagesPerMinute);
    const { logger } = options;
    this.#writes = new DurableWrites({
      onFailure: (err, what) => {
        logger.error({ err, what }, "database write failed; answering from memory and retrying every second");
        this.#emit({ type: "store_error" });
      },
      onRecovered: () => logger.info("database writes work again; everything that waited is saved"),
      onGivenUp: (count) => logger.error({ count }, "the database has failed for too long; gave up the oldest waiting writes"),
    });
    this.#context = {
      settings: options.settings,
      store: options.store,
      backend: options.backend,
      backends: options.backends,
      defaultBackend: options.defaultBackend,
      admission: new Admission(options.concurrency),
      shutdown: this.#shutdown.signal,
      closing: () => this.#closing,
      logger,
      writes: this.#writes,
      emit: (event) => this.#emit(event),
      storeFailed: (err, log) => {
        log.error({ err }, "database read failed");
        this.#emit({ type: "store_error" });
      },
    };
  }

  /**
   * Takes a message for an answer: durable from here on (once the store takes it). A gateway replay
   * is recognised before flood control, so it never counts against its sender. Never throws: a
   * user's message must not crash Friend.
   */
  submit(message: IncomingMessage, sink: ReplySink): SubmitResult {
    const session = this.#session(message.channelId);
    const backend = session.backend;
    this.#emit({ type: "seen", backend });
    const drop = (reason: DropReason, result: SubmitResult = "dropped"): SubmitResult => {
      this.#emit({ type: "dropped", backend, reason });
      return result;
    };
    if (session.knows(message.id)) return drop("duplicate", "duplicate");
    const { persona, window } = this.options.settings;
    if (!this.#closing) {
      const verdict = this.#flood.check(message.authorId);
      if (verdict === "ignore") return drop("flood", "ignored");
      if (verdict === "warn") {
        void sink.finish(persona.slowDownReply).catch((err) => this.options.logger.warn({ err }, "could not post the slow-down reply"));
        return drop("flood", "slowed");
      }
    }
    const { text, trimmed, tokens } = fitInput(message.text, window.maxInputChars, window.maxInputTokens);
    const accepted: AcceptedMessage = {
      channelId: message.channelId,
      authorId: message.authorId,
      turn: {
        author: speakerName(message.authorName, session.character.name, this.options.settings.cast),
        text,
        fromFriend: false,
        at: message.at,
        messageId: message.id,
        authorId: message.authorId,
        tokens,
      },
      ...(trimmed ? { trimmed } : {}),
      ...(message.character !== undefined ? { character: message.character } : {}),
      ...(message.guildId ? { guildId: message.guildId } : {}),
      ...(message.parentId ? { parentId: message.parentId } : {}),
    };
    if (this.#closing) {
      session.defer(accepted);
      drop("shutting_down");
      return "deferred";
    }
    return this.#result(session, session.accept(accepted, sink));
  }

  /**
   * Catch-up after a restart: answers, once and in the order they were sent, the messages accepted
   * before it that never got a posted reply, through `sinkFor` (null when the message is gone).
   * Messages older than `maxAgeMs` (and, with `only`, those of other channels) are given up.
   * Run it before new messages are taken, so each channel's window stays in the order things were said.
   */
  async catchUp(options: { maxAgeMs: number; only?: (channelId: string) => boolean; sinkFor: (message: AcceptedMessage) => Promise<ReplySink | null> }): Promise<{ resumed: number; stale: number; gone: number }> {
    const log = this.options.logger;
    let unanswered: AcceptedMessage[];
    try {
      unanswered = this.options.store.unanswered().filter((m) => options.only?.(m.channelId) ?? true);
    } catch (err) {
      this.#context.storeFailed(err, log);
      return { resumed: 0, stale: 0, gone: 0 };
    }
    const oldest = Date.now() - options.maxAgeMs;
    const counts = { resumed: 0, stale: 0, gone: 0 };
    const stale = unanswered.filter((m) => m.turn.at < oldest);
    for (const m of stale) this.#session(m.channelId).abandon([m.turn.messageId]);
    counts.stale = stale.length;
    if (stale.length > 0) log.info({ count: stale.length, messages: stale.map((m) => m.turn.messageId), maxAgeS: options.maxAgeMs / 1000 }, "unanswered messages from before the restart are too old; dropped");
    for (const message of unanswered.filter((m) => m.turn.at >= oldest)) {
      if (this.#closing) break; // what is left stays unanswered for the next start
      const sink = await options.sinkFor(message).catch(() => null);
      const session = this.#session(message.channelId);
      if (!sink) {
        session.abandon([message.turn.messageId]);
        counts.gone++;
        log.info({ msgId: message.turn.messageId, channel: message.channelId }, "an unanswered message from before the restart is gone; dropped");
        continue;
      }
      if (session.knowsInMemory(message.turn.messageId)) continue; // already being answered
      log.info({ msgId: message.turn.messageId, channel: message.channelId }, "answering a message left unanswered before the restart");
      this.#result(session, session.resume(message, sink));
      counts.resumed++;
    }
    return counts;
  }

  /**
   * Gives up the channel's unanswered messages (a terminal chat reopened: nobody waits on them),
   * except those `waitedOn` says someone still waits on; returns how many were given up.
   */
  dropUnanswered(channelId: string, waitedOn: (messageId: string) => boolean = () => false): number {
    let ids: string[];
    try {
      ids = this.options.store
        .unanswered()
        .filter((m) => m.channelId === channelId && !waitedOn(m.turn.messageId))
        .map((m) => m.turn.messageId);
    } catch (err) {
      this.#context.storeFailed(err, this.options.logger);
      return 0;
    }
    this.#session(channelId).abandon(ids);
    return ids.length;
  }

  /** Forgets a channel's conversation (see ChannelSession.reset): how many turns, and whether the store has forgotten them yet. */
  reset(channelId: string): { turns: number; durable: boolean } {
    const session = this.#session(channelId);
    const { turns, dropped, durable } = session.reset();
    for (const _ of dropped) this.#emit({ type: "dropped", backend: session.backend, reason: "reset" });
    return { turns, durable };
  }

  /** Messages deleted on Discord (one, or a bulk delete): see ChannelSession.withdraw. Returns how many Friend held. */
  withdraw(channelId: string, messageIds: readonly string[]): number {
    const session = this.#sessionOrPassing(channelId);
    const waiting = session.pendingCount;
    const held = session.withdraw(messageIds);
    for (let n = session.pendingCount; n < waiting; n++) this.#emit({ type: "dropped", backend: session.backend, reason: "withdrawn" });
    return held;
  }

  /** A message edited on Discord takes its new text, cut to the input bounds like a new one (see ChannelSession.revise). */
  revise(channelId: string, messageId: string, newText: string): boolean {
    const { window } = this.options.settings;
    const { text, trimmed } = fitInput(newText, window.maxInputChars, window.maxInputTokens);
    return this.#sessionOrPassing(channelId).revise(messageId, text, trimmed);
  }

  /**
   * /forget: everything a user said to Friend, in every channel and DM, and Friend's replies to
   * them, leave memory, the store and the backends' caches (see ChannelSession.forgetAuthor).
   */
  forget(authorId: string): Forgotten {
    let stored: string[] = [];
    let partial = false;
    try {
      stored = this.options.store.channelsOf(authorId);
    } catch (err) {
      this.#context.storeFailed(err, this.options.logger);
      partial = true;
    }
    const total: Forgotten = { channels: 0, turns: 0, replies: 0, unanswered: 0, durable: true, partial };
    for (const channelId of new Set([...this.#sessions.keys(), ...stored])) {
      const inStore = stored.includes(channelId);
      const result = this.#sessionOrPassing(channelId).forgetAuthor(authorId, inStore);
      if (result.turns + result.replies + result.unanswered === 0) continue;
      total.channels++;
      total.turns += result.turns;
      total.replies += result.replies;
      total.unanswered += result.unanswered;
      total.durable &&= result.durable;
    }
    return total;
  }

  /**
   * Retention: forgets turns older than `retentionMs` now, and again every hour, until close().
   * Without `retentionMs` nothing is ever forgotten for age.
   */
  startRetention(): void {
    if (this.options.retentionMs === undefined || this.#retention) return;
    this.expire();
    this.#retention = setInterval(() => this.expire(), RETENTION_CHECK_MS);
    this.#retention.unref();
  }

  /** Forgets turns from before `now - retentionMs` in every channel (see ChannelSession.expire); returns how many went. */
  expire(now = Date.now()): number {
    const { retentionMs } = this.options;
    if (retentionMs === undefined) return 0;
    const before = now - retentionMs;
    let stored: string[] = [];
    try {
      stored = this.options.store.channelsBefore(before);
    } catch (err) {
      this.#context.storeFailed(err, this.options.logger);
    }
    let count = 0;
    for (const channelId of new Set([...this.#sessions.keys(), ...stored])) count += this.#sessionOrPassing(channelId).expire(before, stored.includes(channelId));
    if (count > 0) this.options.logger.info({ turns: count, olderThanDays: retentionMs / 86_400_000 }, "forgot turns past their retention");
    return count;
  }

  /**
   * A channel (or thread) was deleted: it, and any threads recorded under it, are forgotten
   * everywhere (see ChannelSession.leave). `known`: its threads that the caller knows of.
   */
  leaveChannel(channelId: string, known: readonly string[] = []): void {
    this.#leave([channelId, ...known, ...this.#channelsUnder(channelId)]);
  }

  /** Friend left a server (or it was deleted): every channel of it is forgotten. `known`: its channels the caller knows of. */
  leaveGuild(guildId: string, known: readonly string[]): void {
    this.#leave([...known, ...this.#channelsUnder(guildId)]);
  }

  /**
   * Forgets the recorded channels that `gone` says no longer exist for Friend (deleted, or their
   * server left, while Friend was offline: Discord does not replay that). Returns their ids.
   */
  leaveWhere(gone: (place: ChannelPlace) => boolean): string[] {
    let places: ChannelPlace[];
    try {
      places = this.options.store.places();
    } catch (err) {
      this.#context.storeFailed(err, this.options.logger);
      return [];
    }
    const left = places.filter(gone).map((p) => p.channelId);
    this.#leave([...left, ...left.flatMap((id) => this.#channelsUnder(id))]);
    return left;
  }

  #channelsUnder(id: string): string[] {
    try {
      return this.options.store.channelsUnder(id);
    } catch (err) {
      this.#context.storeFailed(err, this.options.logger);
      return [];
    }
  }

  #leave(channelIds: readonly string[]): void {
    for (const channelId of new Set(channelIds)) {
      const session = this.#sessionOrPassing(channelId);
      for (const _ of session.leave()) this.#emit({ type: "dropped", backend: session.backend, reason: "left" });
      // Nothing is left to keep in memory; a session still ending its reply stays until it is idle.
      if (!session.busy) this.#sessions.delete(channelId);
    }
  }

  /** Ends the channel's reply in flight where it stands (see ChannelSession.stopReply). */
  stopReply(channelId: string): boolean {
    return this.#sessions.get(channelId)?.stopReply() ?? false;
  }

  /** Settles once the channel has no turn running. */
  idle(channelId: string): Promise<void> {
    return this.#sessions.get(channelId)?.idle() ?? Promise.resolve();
  }

  /** The cast member the channel's next turn speaks as. */
  personaOf(channelId: string): CastMember {
    return this.#session(channelId).character;
  }

  /** /persona: the channel speaks as `character` from its next turn. */
  setPersona(channelId: string, character: CastMember): void {
    this.#session(channelId).setPersona(character);
  }

  /** Scene lines kept per reply in the channel (/scene), 0 when off. */
  sceneOf(channelId: string): number {
    return this.#session(channelId).sceneLines;
  }

  setScene(channelId: string, lines: number): void {
    this.#session(channelId).setSceneLines(lines);
  }

  backendOf(channelId: string): BackendName {
    return this.#session(channelId).backend;
  }

  setBackend(channelId: string, backend: BackendName): void {
    this.#session(channelId).setBackend(backend);
  }

  /** The channel's window size, for /status; null when the store cannot be read. */
  windowSize(channelId: string): { turns: number; tokens: number } | null {
    return this.#session(channelId).windowSize();
  }

  /** Store writes not yet durable (the store is failing). */
  get unsavedWrites(): number {
    return this.#writes.waiting;
  }

  /** Tries the writes still waiting; true when every write so far is durable (for /healthz). */
  writesDurable(): boolean {
    return this.#writes.flush();
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
   * Always settles within `graceMs` plus the posting of what was cut short (bounded by
   * `limits.postTimeoutMs`, and at most CLOSE_MS more).
   */
  async close(graceMs: number): Promise<void> {
    this.#closing = true;
    clearInterval(this.#retention);
    const idle = Promise.allSettled([...this.#sessions.values()].map((s) => s.idle()));
    const timer = setTimeout(() => this.#shutdown.abort(new BackendError("aborted", "Friend is shutting down.")), graceMs);
    let hard: NodeJS.Timeout | undefined;
    await Promise.race([idle, new Promise<void>((resolve) => (hard = setTimeout(resolve, graceMs + CLOSE_MS)))]);
    clearTimeout(timer);
    clearTimeout(hard);
    this.#shutdown.abort(new BackendError("aborted", "Friend is shutting down."));
    if (!this.#writes.close()) this.options.logger.error({ waiting: this.#writes.waiting }, "the database still fails at shutdown; some state was not saved");
  }

  #result(session: ChannelSession, { result, dropped }: { result: "started" | "queued"; dropped?: unknown }): SubmitResult {
    if (dropped) this.#emit({ type: "dropped", backend: session.backend, reason: "queue_full" });
    return result;
  }
  /**
   * The channel's session in memory, else a passing one that reaches only the store (nothing of the
   * channel is in memory to own). Deletes and edits come from every channel Friend can see, and
   * /forget, retention and leaving touch channels nobody talks in now: none of them may push the
   * channels Friend talks in out of memory.
   */
  #sessionOrPassing(channelId: string): ChannelSession {
    return this.#sessions.get(channelId) ?? new ChannelSession(channelId, this.#context);
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
