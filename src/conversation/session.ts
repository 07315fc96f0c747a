import type { Logger } from "pino";
import type { Settings } from "../config/settings.ts";
import { untilAborted, withinDeadline } from "../core/abort.ts";
import { BackendError, type Backend, type BackendErrorKind, type BackendName, type GenerationStats } from "../core/backend.ts";
import { findCastMember, type CastMember } from "../core/cast.ts";
import { personaAs, type Persona } from "../core/persona.ts";
import type { Turn } from "../core/turn.ts";
import { ReplyCleaner } from "../reply/clean.ts";
import { sceneLines, type SceneLine } from "../reply/scene.ts";
import { stopSequences } from "../reply/speakers.ts";
import type { Admission } from "./admission.ts";
import type { DurableWrites } from "./durable.ts";
import type { ConversationEvent } from "./events.ts";
import { recentSpeakers } from "../core/speakers.ts";
import type { AcceptedMessage, ConversationStore, ForgottenAuthor } from "./store.ts";
import { countTokens } from "../core/tokens.ts";
import { ChannelWindow } from "./window.ts";

/** Where a reply goes; the Discord layer (or the terminal) implements it for the message being answered. */
export interface ReplySink {
  typing(): Promise<void>;
  /** Shows text that is still growing (any length; the sink shows what fits); always something the final reply starts with. */
  update(text: string): Promise<void>;
  /** Posts the final reply (any length; the sink splits it), replacing what `update` showed. Rejects if it could not be posted. */
  finish(text: string): Promise<void>;
  /**
   * The reply could not be posted in full: whatever of it is on Discord is replaced by `text` (the
   * error line), or removed, so no half-sentence stands. The message stays unanswered for catch-up.
   */
  abandon?(text: string): Promise<void>;
  /** Shows a short note while the reply is delayed (Friend is busy); the reply replaces it. */
  notice?(text: string): Promise<void>;
  /**
   * The reply answered words that were deleted or changed meanwhile: whatever of it is on Discord
   * is deleted. The sink may be used again for the answer that replaces it.
   */
  discard?(): Promise<void>;
  /** Optional: each chunk of the model's raw output, before cleaning (the terminal's --raw view). */
  raw?(chunk: string): void;
  /** Optional: who speaks this turn, told once before anything is shown (Discord posts under their name and avatar). */
  speakAs?(character: CastMember): void;
  /** Posts one line of a scene as its own message under `character`, after the reply. Rejects if it could not be posted. */
  sceneLine?(character: CastMember, text: string): Promise<void>;
}

/** A user's turn waiting for Friend, with where its reply goes. */
export interface PendingTurn {
  turn: Turn & { messageId: string };
  sink: ReplySink;
  /** The text was cut to the input bounds: the reply says so. */
  trimmed?: boolean;
  /** The cast member it replies to, who answers it instead of the channel's persona. */
  character?: string;
}

/** What every session shares: settings, the store, the backends, admission and the shutdown signal. */
export interface SessionContext {
  settings: Settings;
  store: ConversationStore;
  backend(name: BackendName): Backend;
  /** Every backend created so far, so /reset can clear per-channel state in each. */
  backends(): Iterable<Backend>;
  defaultBackend: BackendName;
  admission: Admission;
  /** Aborted when the shutdown grace period ends: generations still running stop. */
  shutdown: AbortSignal;
  /** True once Friend takes no new turns (shutting down). */
  closing(): boolean;
  logger: Logger;
  emit(event: ConversationEvent): void;
  /** Every channel's store writes, in order, retried while the store is failing. */
  writes: DurableWrites;
  /** A store read failed: logged with its cause, counted, and the turn ends in the error line. */
  storeFailed(err: unknown, log: Logger): void;
}

/** Discord shows "typing…" for about 10 s per call. */
const TYPING_REFRESH_MS = 8000;
/** Shown once to a channel whose reply waits for a free backend for `limits.slowNoticeMs`. */
export const SLOW_NOTICE = "Hang on, lots of people are talking to me right now. I'll be right with you.";
/** What a user reads when the channel's model cannot be loaded: the reason, cut to a line. */
export function loadFailedLine(reason: string): string {
  const short = reason.length > 300 ? `${reason.slice(0, 299)}…` : reason;
  return `My model won't load right now (${short}). Try again later, or ask someone with Manage Channels to switch me with /model.`;
}
/** Added under a reply to a message that was cut to the input bounds (Discord's small print). */
export const TRIMMED_NOTE = "-# (Your message was long, so I only read the first part of it.)";
/** What a user reads when their message does not fit the model even on its own. */
export const TOO_LONG_LINE = "Whoa, that message is way too long for me to take in. Could you send a shorter one?";

type Generated = { text: string; stats?: GenerationStats; firstTextMs?: number; generationMs: number; stoppedByUser: boolean; scene: SceneLine[] };

/** Why a turn ended in the error line: which part failed, or which limit ran out. */
export type FailureReason = "backend" | "too_long" | "load_timeout" | "first_text_timeout" | "reply_timeout" | "store" | "unknown";

/**
 * What a turn ends in. `reply`: part of the story (`post` null only when the user stopped it before
 * anything showed); `error`: a line saying what went wrong, answered but not remembered; `stopped`:
 * the shutdown cut it off, left unanswered for catch-up.
 */
type Outcome =
  | { kind: "reply"; post: string | null; generated: Generated; fallback: boolean }
  | { kind: "error"; post: string; reason: FailureReason }
  | { kind: "stopped"; post: string | null }
  | { kind: "interrupted"; post: null };

/**
 * The turn being answered, and what happened to its messages meanwhile. Deleting or editing one of
 * them (or forgetting its author) interrupts the turn: it posts nothing more, deletes what it had
 * shown, and the messages that are left are answered anew. A channel that is gone gets nothing.
 */
interface TurnInFlight {
  batch: PendingTurn[];
  interrupt: AbortController;
  /** Messages of the batch deleted on Discord (or forgotten) since the turn began. */
  withdrawn: Set<string>;
  /** The channel was deleted, or Friend left its server: nothing is posted, kept or deleted. */
  gone: boolean;
}

/** What forgetting one user removed from a channel, and whether the store has forgotten it yet. */
export interface ForgetResult extends ForgottenAuthor {
  durable: boolean;
}

/** A failure that already knows what the user should read. */
class TurnFailure extends Error {
  constructor(
    readonly reason: FailureReason,
    readonly userLine: string | null,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "TurnFailure";
  }
}

/**
 * One channel's conversation, and the only owner of it: its pending messages, its window, its
 * backend choice, its epoch (bumped by /reset) and its generation in flight. Messages, deletes
 * and edits, /reset, /forget, /model, retention, the channel's deletion, eviction and the shutdown
 * drain all go through here, so they cannot race: one turn runs at a time, messages that arrive
 * meanwhile become the next turn, a turn whose messages changed is answered anew, and a result
 * computed in an old epoch is never written into a new one.
 */
export class ChannelSession {
  /** Waiting messages, oldest first (by when they were sent, so catch-up goes before newer ones). */
  readonly #pending: PendingTurn[] = [];
  /** The turn being answered now (a gateway replay of one of its messages is not new). */
  #current: TurnInFlight | null = null;
  #window: ChannelWindow | undefined;
  #epoch = 0;
  #backend: BackendName | undefined;
  #persona: string | undefined;
  #scene: number | undefined;
  /** Who speaks in the turn running now: read once at its start, so /persona never changes a reply in flight. */
  #speaker: Persona;
  /** The scene lines the turn running now keeps (0: none), read at its start like the speaker. */
  #turnScene = 0;
  #running: Promise<void> | null = null;
  /** Stops the generation in flight at the user's request (Ctrl-C in the terminal). */
  #userStop: AbortController | null = null;

  constructor(
    readonly id: string,
    private readonly ctx: SessionContext,
  ) {
    this.#speaker = ctx.settings.persona;
  }

  /** Answering or holding messages: such a session is never evicted. */
  get busy(): boolean {
    return this.#running !== null || this.#pending.length > 0;
  }

  get pendingCount(): number {
    return this.#pending.length;
  }

  /**
   * The backend this channel's next turn uses: its /model choice, else the default. A store that
   * cannot be read gives the default for now, and is asked again next time.
   */
  get backend(): BackendName {
    if (this.#backend) return this.#backend;
    try {
      return (this.#backend = this.ctx.store.getBackend(this.id) ?? this.ctx.defaultBackend);
    } catch (err) {
      this.ctx.storeFailed(err, this.ctx.logger.child({ channel: this.id }));
      return this.ctx.defaultBackend;
    }
  }

  /**
   * The cast member this channel's next turn speaks as: its /persona choice, else the configured
   * persona's entry. A stored name no longer in the cast, or a store that cannot be read, gives the
   * default (the store is asked again next time).
   */
  get character(): CastMember {
    const { cast, persona } = this.ctx.settings;
    const fallback = findCastMember(cast, persona.name)!;
    if (this.#persona === undefined) {
      try {
        this.#persona = this.ctx.store.getPersona(this.id) ?? persona.name;
      } catch (err) {
        this.ctx.storeFailed(err, this.ctx.logger.child({ channel: this.id }));
        return fallback;
      }
    }
    return findCastMember(cast, this.#persona) ?? fallback;
  }

  /** /persona: applies from the next turn; a reply in flight finishes as the character that started it. Kept through /reset. */
  setPersona(character: CastMember): void {
    this.#persona = character.name;
    this.#write("save the channel's persona", (store) => store.setPersona(this.id, character.name));
  }

  /** How many follow-on lines a scene keeps here (/scene), 0 when off; 0 while the store cannot be read. */
  get sceneLines(): number {
    if (this.#scene !== undefined) return this.#scene;
    try {
      return (this.#scene = this.ctx.store.getScene(this.id));
    } catch (err) {
      this.ctx.storeFailed(err, this.ctx.logger.child({ channel: this.id }));
      return 0;
    }
  }

  /** /scene: from the next turn; 0 turns scenes off. */
  setSceneLines(lines: number): void {
    this.#scene = lines;
    this.#write("save the channel's scene setting", (store) => store.setScene(this.id, lines));
  }

  /** True when the message is waiting or being answered. */
  knowsInMemory(messageId: string): boolean {
    return this.#current?.batch.some((p) => p.turn.messageId === messageId) || this.#pending.some((p) => p.turn.messageId === messageId);
  }

  /** True when the message is waiting, being answered, or already known to the store (a gateway replay). */
  knows(messageId: string): boolean {
    if (this.knowsInMemory(messageId)) return true;
    try {
      return this.ctx.store.isKnown(messageId);
    } catch {
      return false; // a store that cannot be read: better to answer twice than never
    }
  }

  /** Takes a new message: durable (once the store takes it) before any work on it starts. */
  accept(message: AcceptedMessage, sink: ReplySink): { result: "started" | "queued"; dropped?: PendingTurn } {
    this.defer(message);
    return this.#enqueue({ turn: message.turn, sink, ...(message.trimmed ? { trimmed: true } : {}), ...(message.character !== undefined ? { character: message.character } : {}) });
  }

  /** Keeps a message for the next start (Friend is shutting down): durable, unanswered. */
  defer(message: AcceptedMessage): void {
    this.#write("accept a message", (store) => void store.accept(message));
  }

  /** Answers a message accepted before a restart (catch-up); it is already durable. */
  resume(message: AcceptedMessage, sink: ReplySink): { result: "started" | "queued"; dropped?: PendingTurn } {
    return this.#enqueue({ turn: message.turn, sink, ...(message.character !== undefined ? { character: message.character } : {}) });
  }

  /** Gives up on messages that will never be answered (too old, or gone from Discord). */
  abandon(messageIds: readonly string[]): void {
    if (messageIds.length > 0) this.#write("drop unanswered messages", (store) => store.drop(this.id, messageIds));
  }

  /**
   * The user deleted messages on Discord (or edited them so they no longer address Friend). They
   * leave the queue, the window, the store and the backends' caches; a turn answering one of them
   * is interrupted (see TurnInFlight), and the others in it are answered anew. Returns how many
   * Friend held in memory (the store is cleaned either way).
   */
  withdraw(messageIds: readonly string[]): number {
    const ids = new Set(messageIds);
    let held = this.#unqueue((p) => ids.has(p.turn.messageId)).length;
    held += this.#withdrawInFlight((p) => ids.has(p.turn.messageId));
    const inWindow = this.#window?.rewrite((t) => (t.messageId !== undefined && ids.has(t.messageId) ? null : t)) ?? 0;
    held += inWindow;
    let stored = 0;
    const durable = this.#write("forget deleted messages", (store) => void (stored = store.forgetMessages(this.id, [...ids])));
    if (inWindow > 0 || stored > 0 || !durable) this.#resetCaches();
    return held;
  }

  /**
   * The user edited a message. Waiting, it is answered with the new text; being answered, the turn
   * is interrupted and answered anew with it; answered, the window (and the store) take the new
   * text. An edit that leaves the text as it was (Discord adding an embed) changes nothing.
   */
  revise(messageId: string, text: string, trimmed: boolean): boolean {
    const tokens = countTokens(text);
    const revised = (turn: PendingTurn["turn"]) => ({ ...turn, text, tokens });
    const waiting = this.#pending.find((p) => p.turn.messageId === messageId) ?? this.#current?.batch.find((p) => p.turn.messageId === messageId);
    let inWindow = 0;
    if (waiting) {
      if (waiting.turn.text === text) return false;
      waiting.turn = revised(waiting.turn);
      if (trimmed) waiting.trimmed = true;
      else delete waiting.trimmed;
      const current = this.#current;
      if (current?.batch.includes(waiting) && !current.gone) current.interrupt.abort();
    } else {
      const old = this.#window?.turns.find((t) => t.messageId === messageId && !t.fromFriend);
      if (old?.text === text) return false;
      inWindow = this.#window?.rewrite((t) => (t === old ? { ...t, text, tokens } : t)) ?? 0;
    }
    let stored = 0;
    const durable = this.#write("save an edited message", (store) => void (stored = store.reviseMessage(this.id, messageId, text, tokens)));
    if (inWindow > 0 || stored > 0 || !durable) this.#resetCaches();
    return waiting !== undefined || inWindow > 0 || stored > 0;
  }

  /**
   * /forget: everything a user said here goes (waiting, being answered, remembered, stored), and so
   * do Friend's replies to them. A turn answering them is interrupted; others' messages in it are
   * answered anew. `stored`: the store holds something of theirs here (else only memory is looked at).
   */
  forgetAuthor(authorId: string, stored: boolean): ForgetResult {
    const theirs = (p: PendingTurn) => p.turn.authorId === authorId;
    const memory: ForgottenAuthor = { turns: 0, replies: 0, unanswered: this.#unqueue(theirs).length + this.#withdrawInFlight(theirs) };
    this.#window?.rewrite((t) => {
      if (t.fromFriend && t.answered?.includes(authorId)) return memory.replies++, null;
      if (!t.fromFriend && t.authorId === authorId) return memory.turns++, null;
      return t;
    });
    const inMemory = memory.turns + memory.replies + memory.unanswered;
    if (!stored && inMemory === 0) return { ...memory, durable: true };
    let fromStore: ForgottenAuthor | undefined;
    const durable = this.#write("forget a user", (store) => void (fromStore = store.forgetAuthor(this.id, authorId)));
    this.#resetCaches();
    // The store holds more than the window (older turns); when it cannot be written yet, memory is what is known.
    return { ...(durable && fromStore ? fromStore : memory), durable };
  }

  /**
   * Retention: turns from before `before` leave the window and the store. `stored`: the store holds
   * some (else only memory is looked at). Returns how many turns went.
   */
  expire(before: number, stored: boolean): number {
    const inWindow = this.#window?.rewrite((t) => (t.at < before ? null : t)) ?? 0;
    if (!stored && inWindow === 0) return 0;
    let expired = 0;
    const durable = this.#write("forget old turns", (store) => void (expired = store.expire(this.id, before)));
    if (inWindow > 0 || expired > 0 || !durable) this.#resetCaches();
    return Math.max(inWindow, expired);
  }

  /**
   * The channel was deleted, or Friend left its server: everything of it goes, in memory, in the
   * store and in the backends. A reply in flight stops and is not posted (there is nowhere to);
   * waiting messages are dropped and returned.
   */
  leave(): PendingTurn[] {
    this.#epoch++;
    const dropped = this.#pending.splice(0);
    const current = this.#current;
    if (current) {
      current.gone = true;
      current.interrupt.abort();
    }
    this.#window = new ChannelWindow(this.ctx.settings.window);
    this.#backend = undefined;
    this.#write("forget a deleted channel", (store) => store.forgetChannel(this.id));
    this.#resetCaches();
    return dropped;
  }

  /** Takes waiting messages out of the queue; returns them. */
  #unqueue(which: (p: PendingTurn) => boolean): PendingTurn[] {
    const taken = this.#pending.filter(which);
    for (const p of taken) this.#pending.splice(this.#pending.indexOf(p), 1);
    return taken;
  }

  /** Marks messages of the turn in flight as withdrawn, interrupting it; returns how many were newly withdrawn. */
  #withdrawInFlight(which: (p: PendingTurn) => boolean): number {
    const current = this.#current;
    if (!current || current.gone) return 0;
    let count = 0;
    for (const p of current.batch) {
      if (!which(p) || current.withdrawn.has(p.turn.messageId)) continue;
      current.withdrawn.add(p.turn.messageId);
      count++;
    }
    if (count > 0) current.interrupt.abort();
    return count;
  }

  /** Per-channel state in every backend (the local KV cache) no longer matches the window. */
  #resetCaches(): void {
    for (const backend of this.ctx.backends()) backend.resetChannel?.(this.id);
  }

  /**
   * Queues a turn in the order the messages were sent; starts answering unless a turn is already
   * running. When the queue is over its bound the oldest waiting message is dropped and returned
   * (it will never be answered).
   */
  #enqueue(pending: PendingTurn): { result: "started" | "queued"; dropped?: PendingTurn } {
    this.#insert(pending);
    const dropped = this.#pending.length > this.ctx.settings.limits.maxPendingPerChannel ? this.#pending.shift() : undefined;
    if (dropped) this.abandon([dropped.turn.messageId]);
    const result = this.#running ? "queued" : "started";
    this.#kick();
    return { result, dropped };
  }

  /** Puts a message in the queue in the order the messages were sent. */
  #insert(pending: PendingTurn): void {
    const at = pending.turn.at;
    const before = this.#pending.findIndex((p) => p.turn.at > at);
    this.#pending.splice(before === -1 ? this.#pending.length : before, 0, pending);
  }

  /** Starts the drain unless one runs; re-checked in the same step that ends a drain, so no message is stranded. */
  #kick(): void {
    if (this.#running || this.#pending.length === 0 || this.ctx.closing()) return;
    this.#running = this.#drain().finally(() => {
      this.#running = null;
      this.#kick();
    });
  }

  /** Settles once no turn is running (the queue may still hold messages when closing). */
  idle(): Promise<void> {
    return this.#running ?? Promise.resolve();
  }

  /**
   * /reset: forgets everything said before it, in memory, in the store and in the backends. Waiting
   * messages are dropped; a reply in flight is still posted (its asker is waiting) but never
   * remembered. Returns how many turns were forgotten, the dropped messages, and whether the store
   * has already forgotten them (when not, it keeps trying, ahead of every later write: the old rows
   * are never used again by this process, but a restart before the store recovers would bring them back).
   */
  reset(): { turns: number; dropped: PendingTurn[]; durable: boolean } {
    const turns = this.windowSize()?.turns ?? 0;
    this.#epoch++;
    const dropped = this.#pending.splice(0);
    this.#window = new ChannelWindow(this.ctx.settings.window);
    const durable = this.#write("forget a channel", (store) => store.clearChannel(this.id));
    this.#resetCaches();
    return { turns, dropped, durable };
  }

  /** /model: applies from the next turn; a reply in flight finishes on the backend that started it. */
  setBackend(name: BackendName): void {
    this.#backend = name;
    this.#write("save the channel's backend", (store) => store.setBackend(this.id, name));
  }

  /**
   * Ends the reply in flight now, as if the model had stopped there: what was shown so far is the
   * reply. Returns false when no reply is being generated.
   */
  stopReply(): boolean {
    if (!this.#userStop || this.#userStop.signal.aborted) return false;
    this.#userStop.abort();
    return true;
  }

  /** The window's size, for /status; null when the store cannot be read. */
  windowSize(): { turns: number; tokens: number } | null {
    try {
      return this.#loadedWindow().size;
    } catch (err) {
      this.ctx.storeFailed(err, this.ctx.logger.child({ channel: this.id }));
      return null;
    }
  }

  /** Runs a store write through the channel-wide write order; true when it is durable now. */
  #write(what: string, run: (store: ConversationStore) => void): boolean {
    return this.ctx.writes.write(what, () => run(this.ctx.store));
  }

  /** The window, read from the store the first time; throws when the store cannot be read (asked again next turn). */
  #loadedWindow(): ChannelWindow {
    if (!this.#window) {
      // Turns stored before token counts were kept are counted once, here.
      const turns = this.ctx.store.loadWindow(this.id).map((t) => (t.tokens === undefined ? { ...t, tokens: countTokens(t.text) } : t));
      this.#window = new ChannelWindow(this.ctx.settings.window, turns);
    }
    return this.#window;
  }

  async #drain(): Promise<void> {
    while (this.#pending.length > 0 && !this.ctx.closing()) {
      // Everything that arrived while the last turn ran becomes one turn.
      const turn: TurnInFlight = { batch: this.#pending.splice(0), interrupt: new AbortController(), withdrawn: new Set(), gone: false };
      this.#current = turn;
      try {
        await this.#answer(turn);
      } catch (err) {
        // #answer settles every failure into an outcome; this is the last line against a bug.
        this.ctx.logger.error({ err, channel: this.id }, "a turn failed unexpectedly");
      } finally {
        this.#current = null;
      }
    }
  }

  async #answer(turn: TurnInFlight): Promise<void> {
    const { batch } = turn;
    const interrupt = turn.interrupt.signal;
    const epoch = this.#epoch;
    const backend = this.backend;
    const last = batch.at(-1)!;
    const sink = last.sink;
    // A reply to a character's message is answered by that character.
    const character = (last.character !== undefined && findCastMember(this.ctx.settings.cast, last.character)) || this.character;
    this.#speaker = personaAs(this.ctx.settings.persona, character);
    this.#turnScene = sink.sceneLine ? this.sceneLines : 0;
    sink.speakAs?.(character);
    const log = this.ctx.logger.child({ msgId: last.turn.messageId, channel: this.id, backend, persona: character.name });
    const userTurns = batch.map((p) => p.turn);
    const started = Date.now();
    if (batch.length > 1) this.ctx.emit({ type: "coalesced", backend, count: batch.length });

    const typing = setInterval(() => void sink.typing().catch(() => {}), TYPING_REFRESH_MS);
    void sink.typing().catch(() => {});
    let outcome: Outcome;
    try {
      const window = this.#readWindow(log);
      outcome = window === null ? this.#failed("store", null) : await this.#compose(backend, [...window.turns, ...userTurns], sink, log, interrupt);
    } catch (err) {
      log.error({ err }, "turn failed unexpectedly; answering with the error line");
      outcome = this.#failed("unknown", null);
    } finally {
      clearInterval(typing);
    }

    if (interrupt.aborted) return this.#interrupted(turn, epoch, log);
    // Posted first: a message counts as answered only once its reply is on Discord.
    const note = outcome.kind === "reply" && batch.some((p) => p.trimmed) ? `\n${TRIMMED_NOTE}` : "";
    const posted = outcome.post === null || (await this.#post(sink, outcome.post + note, log));
    // Deleted or edited while the reply was being posted: the posted reply goes too.
    if (interrupt.aborted) return this.#interrupted(turn, epoch, log);
    if (!posted) {
      this.ctx.emit({ type: "dropped", backend, reason: "post_failed" });
      return;
    }
    if (outcome.kind === "stopped") return; // left unanswered on purpose: catch-up answers it at the next start
    if (epoch !== this.#epoch) {
      log.info("the channel was reset during this reply: posted, not remembered");
      return;
    }
    const said = outcome.kind === "reply" ? outcome.post : null;
    const answered = [...new Set(userTurns.flatMap((t) => (t.authorId ? [t.authorId] : [])))];
    // Recorded under the character that said it, so the next prompt reads as a script of who said what.
    const friendTurn: Turn | null = said ? { author: character.name, text: said, fromFriend: true, at: Date.now(), tokens: countTokens(said), answered } : null;
    // A window that could not be read stays unread (read again next turn); the store keeps the turns.
    this.#window?.push(...userTurns, ...(friendTurn ? [friendTurn] : []));
    this.#write("save a reply", (store) => store.complete(this.id, userTurns, friendTurn));
    if (outcome.kind !== "reply") return;
    const { generated } = outcome;
    if (generated.scene.length > 0 && friendTurn) await this.#playScene(generated.scene, sink, epoch, log);
    const latencyMs = Date.now() - started;
    log.info(
      {
        latencyMs,
        firstTextMs: generated.firstTextMs,
        coalesced: batch.length,
        promptTokens: generated.stats?.promptTokens,
        completionTokens: generated.stats?.completionTokens,
        evaluatedPromptTokens: generated.stats?.evaluatedPromptTokens,
        window: this.#window?.size,
      },
      "answered",
    );
    this.ctx.emit({
      type: "answered",
      backend,
      latencyMs,
      firstTextMs: generated.firstTextMs,
      completionTokens: generated.stats?.completionTokens,
      generationMs: generated.generationMs,
      fallback: outcome.fallback,
    });
  }

  /**
   * Posts a scene's lines one by one, each as its own message under its character, and remembers
   * each once it is posted. A new message in the channel, a /reset or the shutdown stops the scene:
   * the lines already posted stay, the rest are not posted.
   */
  async #playScene(scene: readonly SceneLine[], sink: ReplySink, epoch: number, log: Logger): Promise<void> {
    if (!sink.sceneLine) return;
    let posted = 0;
    for (const line of scene) {
      if (this.#pending.length > 0 || this.ctx.closing() || epoch !== this.#epoch) break;
      try {
        await withinDeadline(sink.sceneLine(line.speaker, line.text), this.ctx.settings.limits.postTimeoutMs, () => new Error("scene line not posted in time"));
      } catch (err) {
        log.warn({ err }, "could not post a scene line; the scene ends here");
        break;
      }
      if (epoch !== this.#epoch) break;
      const turn: Turn = { author: line.speaker.name, text: line.text, fromFriend: true, at: Date.now(), tokens: countTokens(line.text) };
      this.#window?.push(turn);
      this.#write("save a scene line", (store) => store.complete(this.id, [], turn));
      posted++;
    }
    log.info({ posted, of: scene.length }, "scene played");
  }

  /**
   * Ends a turn whose messages were deleted or edited meanwhile (see TurnInFlight): what it showed
   * is deleted, and the messages still standing go back to the queue, to be answered anew.
   */
  #interrupted(turn: TurnInFlight, epoch: number, log: Logger): void {
    if (turn.gone) {
      log.info("the channel is gone; the reply in flight was dropped");
      return;
    }
    const sink = turn.batch.at(-1)!.sink;
    void sink.discard?.().catch((err: unknown) => log.warn({ err }, "could not delete the reply to a deleted or edited message"));
    // After a /reset the survivors were dropped with everything else.
    const survivors = epoch === this.#epoch ? turn.batch.filter((p) => !turn.withdrawn.has(p.turn.messageId)) : [];
    for (const p of survivors) this.#insert(p);
    log.info({ withdrawn: turn.withdrawn.size, answeredAnew: survivors.length }, "messages were deleted or edited mid-reply; the reply was withdrawn");
  }

  /** The window, or null (logged) when the store cannot be read. */
  #readWindow(log: Logger): ChannelWindow | null {
    try {
      return this.#loadedWindow();
    } catch (err) {
      this.ctx.storeFailed(err, log);
      return null;
    }
  }

  /**
   * Posts the final text within the posting deadline (a long rate limit must not hold the channel,
   * nor the shutdown). A post that fails or times out is replaced on Discord by the error line (or
   * removed), never left as a half-sentence; the message stays unanswered for catch-up.
   */
  async #post(sink: ReplySink, text: string, log: Logger): Promise<boolean> {
    const { limits, persona } = this.ctx.settings;
    try {
      await withinDeadline(sink.finish(text), limits.postTimeoutMs, () => new Error(`not posted within ${limits.postTimeoutMs} ms`));
      return true;
    } catch (err) {
      log.warn({ err }, "could not post the reply; the message stays unanswered for catch-up");
      // Queued behind the post itself: if that lands late, it is replaced all the same.
      void sink.abandon?.(persona.errorReply).catch((abandonErr: unknown) => log.warn({ err: abandonErr }, "could not replace the unfinished reply"));
      return false;
    }
  }

  /** The error outcome for `reason`, with what the user reads. */
  #failed(reason: FailureReason, userLine: string | null): Outcome {
    return { kind: "error", post: userLine ?? this.ctx.settings.persona.errorReply, reason };
  }

  /** Decides what the user gets: the reply (regenerated once if empty, else the fallback line), the error line, or nothing. */
  async #compose(backend: BackendName, turns: readonly Turn[], sink: ReplySink, log: Logger, interrupt: AbortSignal): Promise<Outcome> {
    const { persona } = this.ctx.settings;
    let shown = false;
    try {
      const generated = await this.#generateAdmitted(backend, turns, sink, () => (shown = true), interrupt);
      // A reply the user stopped stands as it was shown, even empty: stopping is not asking again.
      if (generated.text || generated.stoppedByUser) return { kind: "reply", post: generated.text || null, generated, fallback: false };
      log.info("reply empty after cleaning; regenerating once");
      const again = await this.#generateAdmitted(backend, turns, null, () => {}, interrupt);
      return { kind: "reply", post: again.text || persona.fallbackReply, generated: again, fallback: !again.text };
    } catch (err) {
      if (interrupt.aborted) return { kind: "interrupted", post: null };
      if (this.ctx.shutdown.aborted) {
        log.info({ shown }, "shutdown grace ended mid-reply; the message stays unanswered for catch-up");
        // Never a half-sentence left standing; if nothing was shown, nothing is posted.
        return { kind: "stopped", post: shown ? persona.errorReply : null };
      }
      if (err instanceof TurnFailure) {
        log.warn({ err, reason: err.reason }, "turn failed; answering with what went wrong");
        if (err.reason !== "too_long") this.ctx.emit({ type: "backend_error", backend, kind: "timeout" });
        return this.#failed(err.reason, err.userLine);
      }
      const kind: BackendErrorKind = err instanceof BackendError ? err.kind : "unknown";
      log.warn({ err, kind }, "backend failed; answering with the error line");
      this.ctx.emit({ type: "backend_error", backend, kind });
      if (kind === "too_long") return this.#failed("too_long", TOO_LONG_LINE);
      // A model that cannot load says why (the same reason /model and the log give), not that Friend broke.
      if (kind === "load") return this.#failed("backend", loadFailedLine((err as Error).message));
      return this.#failed(kind === "timeout" ? "reply_timeout" : "backend", null);
    }
  }

  /**
   * Waits for room on the backend (a cold local model loads inside its own slot, delaying nobody
   * else; a channel that waits long is told once), gets the backend ready within its own limit,
   * then generates under two deadlines: one for the first text, one for the whole reply.
   * Throws BackendError or TurnFailure.
   */
  async #generateAdmitted(name: BackendName, turns: readonly Turn[], sink: ReplySink | null, onShown: () => void, interrupt: AbortSignal): Promise<Generated> {
    const { admission, settings } = this.ctx;
    // Shutdown and interruption both stop the turn wherever it is (#compose tells the two apart).
    const cancelled = AbortSignal.any([this.ctx.shutdown, interrupt]);
    const { generation, limits } = settings;
    const backend = this.ctx.backend(name);
    const slow = sink?.notice
      ? setTimeout(() => {
          onShown();
          void sink.notice!(SLOW_NOTICE).catch(() => {});
        }, limits.slowNoticeMs)
      : undefined;
    let release: () => void;
    try {
      release = await admission.acquire(name, cancelled);
    } catch {
      throw new BackendError("aborted", "Friend is shutting down.");
    } finally {
      clearTimeout(slow);
    }
    try {
      if (backend.prepare) await this.#prepare(backend, cancelled);
      const deadline = new AbortController();
      const timer = setTimeout(() => deadline.abort(new BackendError("timeout", `no complete answer within ${generation.timeoutMs} ms`)), generation.timeoutMs);
      const firstText = new AbortController();
      const firstTimer = setTimeout(
        () => firstText.abort(new TurnFailure("first_text_timeout", null, `no text within ${generation.firstTextTimeoutMs} ms`)),
        generation.firstTextTimeoutMs,
      );
      const userStop = (this.#userStop = new AbortController());
      try {
        const failOn = AbortSignal.any([cancelled, deadline.signal, firstText.signal]);
        return await this.#generate(backend, turns, sink, failOn, userStop.signal, onShown, () => clearTimeout(firstTimer));
      } finally {
        clearTimeout(timer);
        clearTimeout(firstTimer);
        this.#userStop = null;
      }
    } catch (err) {
      if (err instanceof BackendError || err instanceof TurnFailure) throw err;
      throw new BackendError(cancelled.aborted ? "aborted" : "unknown", (err as Error).message, { cause: err });
    } finally {
      release();
    }
  }

  /**
   * Gets the backend ready (a download, a model load) within its own limit: past it, the turn says
   * what is still going on, and the backend goes on getting ready for the next one.
   */
  async #prepare(backend: Backend, cancelled: AbortSignal): Promise<void> {
    const { prepareTimeoutMs } = this.ctx.settings.generation;
    const limit = new AbortController();
    const timer = setTimeout(() => {
      const progress = backend.describe().progress?.text;
      const line = `I'm still getting ready${progress ? ` (${progress})` : ""}. Try me again in a minute.`;
      limit.abort(new TurnFailure("load_timeout", line, `the ${backend.name} backend was not ready within ${prepareTimeoutMs} ms`));
    }, prepareTimeoutMs);
    try {
      await untilAborted(backend.prepare!(), AbortSignal.any([cancelled, limit.signal]));
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * One generation through the reply cleaner, streaming what is safe to show to `sink`. The cleaner
   * lives here, once for every backend: when it has cut, the generation is ended. A generation that
   * the signal stopped is an error, never a reply, whatever the backend did with the signal.
   */
  async #generate(
    backend: Backend,
    turns: readonly Turn[],
    sink: ReplySink | null,
    failOn: AbortSignal,
    stopOn: AbortSignal,
    onShown: () => void,
    onFirstText: () => void,
  ): Promise<Generated> {
    const signal = AbortSignal.any([failOn, stopOn]);
    const { generation, cast } = this.ctx.settings;
    const persona = this.#speaker;
    const scene = this.#turnScene;
    const names = recentSpeakers(turns);
    const started = Date.now();
    const stream = backend.generate({
      channelId: this.id,
      persona,
      cast,
      turns,
      // In a scene the cast's lines are wanted: only a user's line stops the model.
      stop: stopSequences(persona.name, names, scene > 0 ? [] : cast, 16),
      maxTokens: generation.maxTokens,
      temperature: generation.temperature,
      topP: generation.topP,
      signal,
    });
    const cleaner = new ReplyCleaner({ personaName: persona.name, windowNames: names, cast });
    let shown = "";
    let lastUpdate = 0;
    let firstTextMs: number | undefined;
    let stats: GenerationStats | undefined;
    let ended = false;
    let raw = "";
    try {
      for (;;) {
        const next = await untilAborted(stream.next(), signal);
        if (next.done) {
          ended = true;
          stats = next.value ?? undefined;
          break;
        }
        if (firstTextMs === undefined) {
          firstTextMs = Date.now() - started;
          onFirstText();
        }
        sink?.raw?.(next.value);
        raw += next.value;
        // The model has started an invented scene: nothing more it says will be shown (in scene mode, the scene goes on).
        if (cleaner.push(next.value).done && scene === 0) break;
        const now = Date.now();
        if (sink && generation.stream && now - lastUpdate >= generation.streamEditIntervalMs) {
          const { text } = cleaner.view();
          if (text && text !== shown) {
            shown = text;
            lastUpdate = now;
            onShown();
            // The sink keeps edits in order; the generation does not wait for Discord.
            void sink.update(text).catch(() => {});
          }
        }
      }
    } catch (err) {
      // A stop the user asked for ends the reply where it stands; anything else is a failure.
      if (!stopOn.aborted || failOn.aborted) throw err;
    } finally {
      // Ends the generation (the local backend frees its sequence). A backend stuck inside a step is not waited for.
      if (!ended) void stream.return(undefined).catch(() => {});
    }
    if (failOn.aborted) {
      const reason: unknown = failOn.reason;
      throw reason instanceof BackendError || reason instanceof TurnFailure ? reason : new BackendError("aborted", "The generation was stopped.", { cause: reason });
    }
    // After a user's stop, only what was already shown stands: the unfinished line was never seen.
    const text = stopOn.aborted ? cleaner.view().text : cleaner.text();
    const kept = scene > 0 && !stopOn.aborted && text ? sceneLines(raw, { personaName: persona.name, windowNames: names, cast, maxLines: scene }) : [];
    return { text, stats, firstTextMs, generationMs: Date.now() - started, stoppedByUser: stopOn.aborted, scene: kept };
  }
}
