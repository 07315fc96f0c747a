import type { Logger } from "pino";
import type { Settings } from "../config/settings.ts";
import { BackendError, type Backend, type BackendErrorKind, type BackendName, type GenerationStats } from "../core/backend.ts";
import type { Turn } from "../core/turn.ts";
import { ReplyCleaner } from "../reply/clean.ts";
import { stopSequences } from "../reply/speakers.ts";
import { splitMessage } from "../reply/split.ts";
import type { Admission } from "./admission.ts";
import type { ConversationEvent } from "./events.ts";
import { recentSpeakers } from "../backends/prompt.ts";
import type { ConversationStore } from "./store.ts";
import { countTokens } from "../core/tokens.ts";
import { ChannelWindow } from "./window.ts";

/** Where a reply goes; the Discord layer (or the terminal) implements it for the message being answered. */
export interface ReplySink {
  typing(): Promise<void>;
  /** Shows text that is still growing; always something the final reply starts with. */
  update(text: string): Promise<void>;
  /** Posts the final reply (any length; the sink splits it), replacing what `update` showed. Rejects if it could not be posted. */
  finish(text: string): Promise<void>;
  /** Optional: each chunk of the model's raw output, before cleaning (the terminal's --raw view). */
  raw?(chunk: string): void;
}

/** A user's turn waiting for Friend, with where its reply goes. */
export interface PendingTurn {
  turn: Turn & { messageId: string };
  sink: ReplySink;
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
  /** A store write failed: logged with its cause, counted, and the channel carries on. */
  storeFailed(err: unknown, log: Logger): void;
}

/** Discord shows "typing…" for about 10 s per call. */
const TYPING_REFRESH_MS = 8000;

type Generated = { text: string; stats?: GenerationStats; firstTextMs?: number; generationMs: number; stoppedByUser: boolean };

/**
 * What a turn ends in. `reply`: part of the story (`post` null only when the user stopped it before
 * anything showed); `error`: the error line, answered but not remembered; `stopped`: the shutdown
 * cut it off, left unanswered for catch-up.
 */
type Outcome =
  | { kind: "reply"; post: string | null; generated: Generated; fallback: boolean }
  | { kind: "error"; post: string }
  | { kind: "stopped"; post: string | null };

/**
 * One channel's conversation, and the only owner of it: its pending messages, its window, its
 * backend choice, its epoch (bumped by /reset) and its generation in flight. Messages, /reset,
 * /model, eviction and the shutdown drain all go through here, so they cannot race: one turn runs
 * at a time, messages that arrive meanwhile become the next turn, and a result computed in an old
 * epoch is never written into a new one.
 */
export class ChannelSession {
  readonly #pending: PendingTurn[] = [];
  /** Message ids of the turn being answered now (a gateway replay of one is not new). */
  readonly #answering = new Set<string>();
  #window: ChannelWindow | undefined;
  #epoch = 0;
  #backend: BackendName | undefined;
  #running: Promise<void> | null = null;
  /** Stops the generation in flight at the user's request (Ctrl-C in the terminal). */
  #userStop: AbortController | null = null;
  lastActive = Date.now();

  constructor(
    readonly id: string,
    private readonly ctx: SessionContext,
  ) {}

  /** Answering or holding messages: such a session is never evicted. */
  get busy(): boolean {
    return this.#running !== null || this.#pending.length > 0;
  }

  get pendingCount(): number {
    return this.#pending.length;
  }

  /** The backend this channel's next turn uses: its /model choice, else the default. */
  get backend(): BackendName {
    return (this.#backend ??= this.ctx.store.getBackend(this.id) ?? this.ctx.defaultBackend);
  }

  has(messageId: string): boolean {
    return this.#answering.has(messageId) || this.#pending.some((p) => p.turn.messageId === messageId);
  }

  /**
   * Queues a turn; starts answering unless a turn is already running. When the queue is over its
   * bound the oldest waiting message is dropped and returned (it will never be answered).
   */
  enqueue(pending: PendingTurn): { result: "started" | "queued"; dropped?: PendingTurn } {
    this.lastActive = Date.now();
    this.#pending.push(pending);
    const dropped = this.#pending.length > this.ctx.settings.limits.maxPendingPerChannel ? this.#pending.shift() : undefined;
    if (this.#running) return { result: "queued", dropped };
    this.#running = this.#drain().finally(() => {
      this.#running = null;
      this.lastActive = Date.now();
    });
    return { result: "started", dropped };
  }

  /** Settles once no turn is running (the queue may still hold messages when closing). */
  idle(): Promise<void> {
    return this.#running ?? Promise.resolve();
  }

  /**
   * /reset: forgets everything said before it, in memory, in the store and in the backends. Waiting
   * messages are dropped; a reply in flight is still posted (its asker is waiting) but never
   * remembered. Returns how many turns were forgotten, and the dropped messages.
   */
  reset(): { turns: number; dropped: PendingTurn[] } {
    const turns = this.windowSize().turns;
    this.#epoch++;
    const dropped = this.#pending.splice(0);
    this.#window = new ChannelWindow(this.ctx.settings.window);
    try {
      this.ctx.store.clearChannel(this.id);
    } catch (err) {
      this.ctx.storeFailed(err, this.ctx.logger.child({ channel: this.id }));
    }
    for (const backend of this.ctx.backends()) backend.resetChannel?.(this.id);
    return { turns, dropped };
  }

  /** /model: applies from the next turn; a reply in flight finishes on the backend that started it. */
  setBackend(name: BackendName): void {
    this.#backend = name;
    try {
      this.ctx.store.setBackend(this.id, name);
    } catch (err) {
      this.ctx.storeFailed(err, this.ctx.logger.child({ channel: this.id }));
    }
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

  windowSize(): { turns: number; tokens: number } {
    return this.#loadedWindow().size;
  }

  #loadedWindow(): ChannelWindow {
    if (!this.#window) {
      // Turns stored before token counts were kept are counted once, here.
      const turns = this.ctx.store.loadWindow(this.id).map((t) => (t.tokens === undefined ? { ...t, tokens: countTokens(t.text) } : t));
      this.#window = new ChannelWindow(this.ctx.settings.window, turns);
    }
    return this.#window;
  }

  async #drain(): Promise<void> {
    try {
      while (this.#pending.length > 0 && !this.ctx.closing()) {
        // Everything that arrived while the last turn ran becomes one turn.
        const batch = this.#pending.splice(0);
        for (const p of batch) this.#answering.add(p.turn.messageId);
        try {
          await this.#answer(batch);
        } finally {
          this.#answering.clear();
        }
      }
    } catch (err) {
      this.ctx.logger.error({ err, channel: this.id }, "channel session failed unexpectedly");
    }
  }

  async #answer(batch: PendingTurn[]): Promise<void> {
    const epoch = this.#epoch;
    const backend = this.backend;
    const last = batch.at(-1)!;
    const sink = last.sink;
    const log = this.ctx.logger.child({ msgId: last.turn.messageId, channel: this.id, backend });
    const userTurns = batch.map((p) => p.turn);
    const started = Date.now();
    if (batch.length > 1) this.ctx.emit({ type: "coalesced", backend, count: batch.length });

    const typing = setInterval(() => void sink.typing().catch(() => {}), TYPING_REFRESH_MS);
    void sink.typing().catch(() => {});
    let outcome: Outcome;
    try {
      outcome = await this.#compose(backend, [...this.#loadedWindow().turns, ...userTurns], sink, log);
    } finally {
      clearInterval(typing);
    }

    // Posted first: a message counts as answered only once its reply is on Discord.
    if (outcome.post !== null) {
      try {
        await sink.finish(outcome.post);
      } catch (err) {
        log.warn({ err }, "could not post the reply; the message stays unanswered for catch-up");
        this.ctx.emit({ type: "dropped", backend, reason: "post_failed" });
        return;
      }
    }
    if (outcome.kind === "stopped") return; // left unanswered on purpose: catch-up answers it at the next start
    if (epoch !== this.#epoch) {
      log.info("the channel was reset during this reply: posted, not remembered");
      return;
    }
    const { persona } = this.ctx.settings;
    const said = outcome.kind === "reply" ? outcome.post : null;
    const friendTurn: Turn | null = said ? { author: persona.name, text: said, fromFriend: true, at: Date.now(), tokens: countTokens(said) } : null;
    this.#loadedWindow().push(...userTurns, ...(friendTurn ? [friendTurn] : []));
    try {
      this.ctx.store.complete(this.id, userTurns, friendTurn);
    } catch (err) {
      this.ctx.storeFailed(err, log);
    }
    if (outcome.kind !== "reply") return;
    const { generated } = outcome;
    const latencyMs = Date.now() - started;
    log.info(
      {
        latencyMs,
        firstTextMs: generated.firstTextMs,
        coalesced: batch.length,
        promptTokens: generated.stats?.promptTokens,
        completionTokens: generated.stats?.completionTokens,
        evaluatedPromptTokens: generated.stats?.evaluatedPromptTokens,
        window: this.#loadedWindow().size,
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

  /** Decides what the user gets: the reply (regenerated once if empty, else the fallback line), the error line, or nothing. */
  async #compose(backend: BackendName, turns: readonly Turn[], sink: ReplySink, log: Logger): Promise<Outcome> {
    const { persona } = this.ctx.settings;
    let shown = false;
    try {
      const generated = await this.#generateAdmitted(backend, turns, sink, () => (shown = true));
      // A reply the user stopped stands as it was shown, even empty: stopping is not asking again.
      if (generated.text || generated.stoppedByUser) return { kind: "reply", post: generated.text || null, generated, fallback: false };
      log.info("reply empty after cleaning; regenerating once");
      const again = await this.#generateAdmitted(backend, turns, null, () => {});
      return { kind: "reply", post: again.text || persona.fallbackReply, generated: again, fallback: !again.text };
    } catch (err) {
      if (this.ctx.shutdown.aborted) {
        log.info({ shown }, "shutdown grace ended mid-reply; the message stays unanswered for catch-up");
        // Never a half-sentence left standing; if nothing was shown, nothing is posted.
        return { kind: "stopped", post: shown ? persona.errorReply : null };
      }
      const kind: BackendErrorKind = err instanceof BackendError ? err.kind : "unknown";
      log.warn({ err, kind }, "backend failed; answering with the error line");
      this.ctx.emit({ type: "backend_error", backend, kind });
      return { kind: "error", post: persona.errorReply };
    }
  }

  /**
   * Waits for room on the backend (a cold local model loads inside its own slot, delaying nobody
   * else), then generates under a deadline. Throws BackendError.
   */
  async #generateAdmitted(name: BackendName, turns: readonly Turn[], sink: ReplySink | null, onShown: () => void): Promise<Generated> {
    const { shutdown, admission, settings } = this.ctx;
    const backend = this.ctx.backend(name);
    let release: () => void;
    try {
      release = await admission.acquire(name, shutdown);
    } catch {
      throw new BackendError("aborted", "Friend is shutting down.");
    }
    try {
      if (backend.prepare) await untilAborted(backend.prepare(), shutdown);
      const deadline = new AbortController();
      const timer = setTimeout(
        () => deadline.abort(new BackendError("timeout", `no complete answer within ${settings.generation.timeoutMs} ms`)),
        settings.generation.timeoutMs,
      );
      const userStop = (this.#userStop = new AbortController());
      try {
        return await this.#generate(backend, turns, sink, AbortSignal.any([shutdown, deadline.signal]), userStop.signal, onShown);
      } finally {
        clearTimeout(timer);
        this.#userStop = null;
      }
    } catch (err) {
      if (err instanceof BackendError) throw err;
      throw new BackendError(shutdown.aborted ? "aborted" : "unknown", (err as Error).message, { cause: err });
    } finally {
      release();
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
  ): Promise<Generated> {
    const signal = AbortSignal.any([failOn, stopOn]);
    const { persona, generation } = this.ctx.settings;
    const names = recentSpeakers(turns);
    const started = Date.now();
    const stream = backend.generate({
      channelId: this.id,
      persona,
      turns,
      stop: stopSequences(persona.name, names, 16),
      maxTokens: generation.maxTokens,
      temperature: generation.temperature,
      topP: generation.topP,
      signal,
    });
    const cleaner = new ReplyCleaner({ personaName: persona.name, windowNames: names });
    let shown = "";
    let lastUpdate = 0;
    let firstTextMs: number | undefined;
    let stats: GenerationStats | undefined;
    let ended = false;
    try {
      for (;;) {
        const next = await untilAborted(stream.next(), signal);
        if (next.done) {
          ended = true;
          stats = next.value ?? undefined;
          break;
        }
        firstTextMs ??= Date.now() - started;
        sink?.raw?.(next.value);
        // The model has started an invented scene: nothing more it says will be shown.
        if (cleaner.push(next.value).done) break;
        const now = Date.now();
        if (sink && generation.stream && now - lastUpdate >= generation.streamEditIntervalMs) {
          const { text } = cleaner.view();
          if (text && text !== shown) {
            shown = text;
            lastUpdate = now;
            onShown();
            // The sink keeps edits in order; the generation does not wait for Discord.
            void sink.update(splitMessage(text)[0]!).catch(() => {});
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
      throw reason instanceof BackendError ? reason : new BackendError("aborted", "The generation was stopped.", { cause: reason });
    }
    // After a user's stop, only what was already shown stands: the unfinished line was never seen.
    const text = stopOn.aborted ? cleaner.view().text : cleaner.text();
    return { text, stats, firstTextMs, generationMs: Date.now() - started, stoppedByUser: stopOn.aborted };
  }
}

/** Settles like `promise`, or rejects with the signal's reason as soon as it aborts (the promise itself goes on). */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
