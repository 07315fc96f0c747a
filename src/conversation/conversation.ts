import type { Logger } from "pino";
import { BackendError, type Backend, type BackendErrorKind, type BackendName, type GenerationStats } from "../backends/backend.ts";
import type { Settings } from "../config/settings.ts";
import { ReplyCleaner } from "../reply/clean.ts";
import { splitMessage } from "../reply/split.ts";
import { stopSequences } from "../reply/speakers.ts";
import { recentSpeakers, speakerName } from "./prompt.ts";
import { FloodGate } from "./flood.ts";
import { Slots } from "./slots.ts";
import type { ConversationStore } from "./store.ts";
import type { Turn } from "./turn.ts";
import { ChannelWindow } from "./window.ts";

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

/** Where a reply goes; the Discord layer implements it for the message being answered. */
export interface ReplySink {
  typing(): Promise<void>;
  /** Shows text that is still growing; always something the final reply starts with. */
  update(text: string): Promise<void>;
  /** Posts the final reply (any length; the sink splits it). */
  finish(text: string): Promise<void>;
}

/** `slowed`: the sender is over their rate and got the one slow-down reply; `ignored`: and is now ignored. */
export type SubmitResult = "started" | "queued" | "duplicate" | "dropped" | "slowed" | "ignored";

export type DropReason = "queue_full" | "shutting_down" | "flood" | "duplicate";

export type ConversationEvent =
  | { type: "seen"; backend: BackendName }
  | { type: "answered"; backend: BackendName; latencyMs: number; firstTextMs?: number; completionTokens?: number; generationMs: number; fallback: boolean }
  | { type: "coalesced"; backend: BackendName; count: number }
  | { type: "dropped"; backend: BackendName; reason: DropReason }
  | { type: "backend_error"; backend: BackendName; kind: BackendErrorKind }
  | { type: "queue_depth"; depth: number };

export interface ConversationOptions {
  settings: Settings;
  store: ConversationStore;
  /** The backend that serves a channel now (its /model choice or the default). */
  backendFor: (channelId: string) => Backend;
  /** Messages a user may send per minute before being slowed down. */
  userMessagesPerMinute: number;
  /** Every backend, so /reset can clear per-channel state in all of them. */
  backends: () => Iterable<Backend>;
  logger: Logger;
  onEvent?: (event: ConversationEvent) => void;
}

interface Pending {
  message: IncomingMessage;
  sink: ReplySink;
}

interface ChannelState {
  id: string;
  window?: ChannelWindow;
  pending: Pending[];
  /** Ids being answered right now: a gateway replay of one must not be queued again. */
  answering: Set<string>;
  running: boolean;
  lastActive: number;
}

/** Discord shows "typing…" for about 10 s per call. */
const TYPING_REFRESH_MS = 8000;

/**
 * Friend's conversations: one generation per channel at a time, messages that arrive meanwhile
 * folded into the next turn, a global limit on concurrent generations, and bounded queues.
 */
export class Conversation {
  readonly #channels = new Map<string, ChannelState>();
  readonly #slots: Slots;
  readonly #running = new Set<Promise<void>>();
  readonly #abort = new AbortController();
  readonly #flood: FloodGate;
  #queued = 0;
  #closing = false;

  constructor(private readonly options: ConversationOptions) {
    this.#slots = new Slots(options.settings.limits.concurrency);
    this.#flood = new FloodGate(options.userMessagesPerMinute);
  }

  /** Queues a message for an answer. Never throws: a user's message must not crash Friend. */
  submit(message: IncomingMessage, sink: ReplySink): SubmitResult {
    const backend = this.options.backendFor(message.channelId).name;
    this.#emit({ type: "seen", backend });
    const drop = (reason: DropReason, result: SubmitResult = "dropped") => {
      this.#emit({ type: "dropped", backend, reason });
      return result;
    };
    if (this.#closing) return drop("shutting_down");
    const state = this.#state(message.channelId);
    if (state.answering.has(message.id) || state.pending.some((p) => p.message.id === message.id) || this.options.store.isAnswered(message.id)) {
      return drop("duplicate", "duplicate");
    }
    const verdict = this.#flood.check(message.authorId);
    if (verdict === "ignore") return drop("flood", "ignored");
    if (verdict === "warn") {
      void sink.finish(this.options.settings.persona.slowDownReply).catch((err) => this.options.logger.warn({ err }, "could not post the slow-down reply"));
      return drop("flood", "slowed");
    }
    const { maxInputChars } = this.options.settings.window;
    const text = message.text.length > maxInputChars ? `${message.text.slice(0, maxInputChars)}…` : message.text;
    state.pending.push({ message: { ...message, text }, sink });
    this.#queued++;
    state.lastActive = Date.now();
    if (state.pending.length > this.options.settings.limits.maxPendingPerChannel) {
      state.pending.shift();
      this.#queued--;
      drop("queue_full");
    }
    this.#emit({ type: "queue_depth", depth: this.queueDepth });
    if (state.running) return "queued";
    state.running = true;
    const run = this.#drain(state).finally(() => this.#running.delete(run));
    this.#running.add(run);
    return "started";
  }

  /** Forgets a channel's conversation: memory, the store and any backend state. */
  reset(channelId: string): void {
    this.#channels.get(channelId)?.window?.clear();
    this.options.store.clearWindow(channelId);
    for (const backend of this.options.backends()) backend.resetChannel?.(channelId);
  }

  /** The channel's window size, for /status. */
  windowSize(channelId: string): { turns: number; tokens: number } {
    return this.#window(this.#state(channelId)).size;
  }

  /** Messages waiting for a reply, across channels. */
  get queueDepth(): number {
    return this.#queued;
  }

  /** Stops taking messages, lets in-flight replies finish for up to `graceMs`, then aborts them. */
  async close(graceMs = 3000): Promise<void> {
    this.#closing = true;
    for (const state of this.#channels.values()) state.pending.length = 0;
    this.#queued = 0;
    const settled = Promise.allSettled([...this.#running]);
    const timer = setTimeout(() => this.#abort.abort(), graceMs);
    await settled;
    clearTimeout(timer);
  }

  #emit(event: ConversationEvent): void {
    try {
      this.options.onEvent?.(event);
    } catch (err) {
      this.options.logger.warn({ err }, "conversation event listener failed");
    }
  }

  #state(channelId: string): ChannelState {
    let state = this.#channels.get(channelId);
    if (!state) {
      state = { id: channelId, pending: [], answering: new Set(), running: false, lastActive: Date.now() };
      this.#channels.set(channelId, state);
      this.#evictIdle();
    }
    return state;
  }

  #window(state: ChannelState): ChannelWindow {
    state.window ??= new ChannelWindow(this.options.settings.window, this.options.store.loadWindow(state.id));
    return state.window;
  }

  /** Keeps memory bounded: idle channels beyond the limit are forgotten (their windows stay in the store). */
  #evictIdle(): void {
    const max = this.options.settings.limits.maxActiveChannels;
    if (this.#channels.size <= max) return;
    const idle = [...this.#channels.values()].filter((s) => !s.running && s.pending.length === 0).sort((a, b) => a.lastActive - b.lastActive);
    for (const state of idle.slice(0, this.#channels.size - max)) this.#channels.delete(state.id);
  }

  async #drain(state: ChannelState): Promise<void> {
    try {
      while (state.pending.length > 0 && !this.#closing) {
        await this.#slots.acquire();
        let held = true;
        // The slot bounds generations, not Discord sends: it is handed back once the reply is ready.
        const release = () => {
          if (held) this.#slots.release();
          held = false;
        };
        try {
          // Everything that arrived while this channel waited or generated becomes one turn.
          const batch = state.pending.splice(0);
          this.#queued -= batch.length;
          this.#emit({ type: "queue_depth", depth: this.#queued });
          if (batch.length > 1) this.#emit({ type: "coalesced", backend: this.options.backendFor(state.id).name, count: batch.length });
          for (const p of batch) state.answering.add(p.message.id);
          if (batch.length > 0) await this.#answer(state, batch, release).finally(() => state.answering.clear());
        } finally {
          release();
        }
      }
    } catch (err) {
      this.options.logger.error({ err, channel: state.id }, "conversation failed unexpectedly");
    } finally {
      state.running = false;
      state.lastActive = Date.now();
    }
  }

  async #answer(state: ChannelState, batch: Pending[], generated: () => void): Promise<void> {
    const { settings, store } = this.options;
    const { persona } = settings;
    const started = Date.now();
    const last = batch.at(-1)!;
    const log = this.options.logger.child({ msgId: last.message.id, channel: state.id });
    const window = this.#window(state);
    const userTurns: Turn[] = batch.map(({ message }) => ({
      author: speakerName(message.authorName, persona.name),
      text: message.text,
      fromFriend: false,
      at: message.at,
      messageId: message.id,
    }));
    window.push(...userTurns);

    const sink = last.sink;
    const typing = setInterval(() => void sink.typing().catch(() => {}), TYPING_REFRESH_MS);
    void sink.typing().catch(() => {});
    const backend = this.options.backendFor(state.id);
    let reply: string;
    let fallback = false;
    try {
      const result = await this.#generate(backend, window.turns, state.id, sink);
      reply = result.text;
      if (!reply) {
        log.info({ backend: backend.name }, "reply empty after cleaning; regenerating once");
        reply = (await this.#generate(backend, window.turns, state.id, null)).text;
      }
      if (!reply) {
        reply = persona.fallbackReply;
        fallback = true;
      }
      const friendTurn: Turn = { author: persona.name, text: reply, fromFriend: true, at: Date.now() };
      window.push(friendTurn);
      store.saveExchange(state.id, [...userTurns, friendTurn], userTurns.map((t) => t.messageId!));
      log.info(
        {
          backend: backend.name,
          latencyMs: Date.now() - started,
          firstTextMs: result.firstTextMs,
          coalesced: batch.length,
          promptTokens: result.stats?.promptTokens,
          completionTokens: result.stats?.completionTokens,
          evaluatedPromptTokens: result.stats?.evaluatedPromptTokens,
          window: window.size,
        },
        "answered",
      );
      this.#emit({
        type: "answered",
        backend: backend.name,
        latencyMs: Date.now() - started,
        firstTextMs: result.firstTextMs,
        completionTokens: result.stats?.completionTokens,
        generationMs: result.generationMs,
        fallback,
      });
    } catch (err) {
      const kind: BackendErrorKind = err instanceof BackendError ? err.kind : "unknown";
      if (kind === "aborted" && this.#closing) {
        clearInterval(typing);
        return;
      }
      log.warn({ err, backend: backend.name, kind }, "backend failed; answering with the error line");
      this.#emit({ type: "backend_error", backend: backend.name, kind });
      // The user turns stay in the window; the error line does not, it is not part of the story.
      store.saveExchange(state.id, userTurns, userTurns.map((t) => t.messageId!));
      reply = persona.errorReply;
    } finally {
      clearInterval(typing);
      generated();
    }
    try {
      await sink.finish(reply);
    } catch (err) {
      log.warn({ err }, "could not post the reply");
    }
  }

  /** Runs one generation through the cleaner, streaming safe text to `sink` when given. */
  async #generate(
    backend: Backend,
    turns: Turn[],
    channelId: string,
    sink: ReplySink | null,
  ): Promise<{ text: string; stats?: GenerationStats; firstTextMs?: number; generationMs: number }> {
    const { persona, generation } = this.options.settings;
    const names = recentSpeakers(turns);
    const cleanOptions = { personaName: persona.name, windowNames: names };
    const started = Date.now();
    const stream = backend.generate({
      channelId,
      persona,
      turns,
      stop: stopSequences(persona.name, names, 16),
      maxTokens: generation.maxTokens,
      temperature: generation.temperature,
      topP: generation.topP,
      signal: this.#abort.signal,
    });
    const cleaner = new ReplyCleaner(cleanOptions);
    let shown = "";
    let lastUpdate = 0;
    let firstTextMs: number | undefined;
    let stats: GenerationStats | undefined;
    for (;;) {
      const next = await stream.next();
      if (next.done) {
        stats = next.value ?? undefined;
        break;
      }
      firstTextMs ??= Date.now() - started;
      if (cleaner.push(next.value).done) {
        // The model has started an invented scene: nothing more it says will be shown.
        await stream.return(undefined);
        break;
      }
      const now = Date.now();
      if (sink && generation.stream && now - lastUpdate >= generation.streamEditIntervalMs) {
        const { text } = cleaner.view();
        if (text && text !== shown) {
          shown = text;
          lastUpdate = now;
          await sink.update(splitMessage(text)[0]!).catch(() => {});
        }
      }
    }
    return { text: cleaner.text(), stats, firstTextMs, generationMs: Date.now() - started };
  }
}
