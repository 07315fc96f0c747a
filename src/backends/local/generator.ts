/**
 * Generation on a loaded model: each channel borrows one of the context's sequences and keeps it
 * between turns, so a turn evaluates only the tokens after the cached prefix; channels generating
 * at once share every decode (`LockstepDecoder`); a channel whose sequence is taken has its state
 * saved (`StateCache`) and loaded again when it returns, after a restart too.
 *
 * It streams raw model text, cut only at the request's stop sequences; the caller cleans it and
 * ends a generation early by aborting its signal or calling `return()` on the generator.
 */
import type { LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import type { Logger } from "pino";
import { BackendError, type GenerateRequest, type GenerationStats } from "../../core/backend.ts";
import { renderScript } from "../prompt.ts";
import { fitPrompt } from "../prompt-fit.ts";
import { reuseCachedTokens, type TokenCodec } from "./cached-tokens.ts";
import { ChannelSlots, type Lease, type Slot } from "./channel-slots.ts";
import { ChunkQueue } from "./chunk-queue.ts";
import { LockstepDecoder, type DecodeJobEnd } from "./lockstep.ts";
import { promptBudget, scoreReply, type ReplyScore } from "./reply-score.ts";
import type { LoadedModel } from "./model-loader.ts";
import type { StateCache, StateCacheStats } from "./state-cache.ts";
import { StopScanner } from "./stop-scanner.ts";
import { TokenText } from "./token-text.ts";

/** Why a local generation ended: the end-of-text token, a stop sequence, or the token limit. */
export type LocalStopReason = "eos" | "stop" | "maxTokens";

export interface LocalGenerationStats extends GenerationStats {
  promptTokens: number;
  /** Tokens the model sampled, including any that formed a stop trigger. */
  completionTokens: number;
  /** Prompt tokens llama.cpp evaluated; the rest came from the sequence's KV cache or a saved state. */
  evaluatedPromptTokens: number;
  /** Prompt tokens that came from a saved state loaded for this turn (0 when none was loaded). */
  restoredPromptTokens: number;
  stopReason: LocalStopReason;
  /** Oldest window turns left out of the prompt to fit the context. */
  droppedTurns: number;
  /** From the request to the first sampled token (prompt evaluation included), in ms. */
  firstTokenMs: number;
}

/** After a trim, the prompt uses at most this fraction of its budget, so many turns fit before the next one. */
const TRIM_TO_FRACTION = 0.5;
/** Prompt tokens evaluated between abort checks; llama.cpp cannot be interrupted inside one decode. */
const PREFILL_CHUNK = 256;
/** Sampling as node-llama-cpp's LlamaCompletion does it: top-k 40, and a 1.1 repeat penalty over the reply's last 64 tokens (newlines exempt). */
const TOP_K = 40;
const REPEAT_PENALTY_TOKENS = 64;
/** A saved state is loaded when it shares at least this many tokens with the new prompt; below, evaluating them is as quick. */
const MIN_RESTORED_TOKENS = 8;

export class LocalGenerator {
  readonly #loaded: LoadedModel;
  readonly #cache: StateCache | undefined;
  readonly #saveEveryTurns: number;
  readonly #log: Logger;
  /** Aborted when the backend closes: ends every generation in flight. */
  readonly #closing: AbortSignal;
  readonly #decoder = new LockstepDecoder();
  readonly #slots: ChannelSlots<LlamaContextSequence>;
  /** The tokens of the saved state that stands for each sequence's current owner, if any. */
  readonly #saved = new WeakMap<LlamaContextSequence, readonly Token[]>();
  /** Turns each sequence's owner has been answered since its state was last saved (for `saveEveryTurns`). */
  readonly #turnsSinceSave = new WeakMap<LlamaContextSequence, number>();
  /** Settle when a generation stops touching its sequence; close() waits for them. */
  readonly #inFlight = new Set<Promise<void>>();

  /** `saveEveryTurns`: also save a channel's state after every this many answered turns; 0 never does. */
  constructor(loaded: LoadedModel, options: { cache: StateCache | undefined; saveEveryTurns?: number; log: Logger; closing: AbortSignal }) {
    this.#loaded = loaded;
    this.#cache = options.cache;
    this.#saveEveryTurns = options.saveEveryTurns ?? 0;
    this.#log = options.log;
    this.#closing = options.closing;
    this.#slots = new ChannelSlots(loaded.sequences, (slot) => this.#unsavedTokens(slot));
  }

  stateStats(): StateCacheStats | undefined {
    return this.#cache?.stats();
  }

  /** The true reply's likelihood after the prompt `generate` would build (friend eval's perplexity), on the channel's sequence. */
  async score(request: GenerateRequest, reply: string): Promise<ReplyScore> {
    // Tracked from the start, so close() frees nothing under it; it watches only its own signal.
    const untrack = this.#begin();
    try {
      const lease = await this.#slots.acquire(request.channelId, request.signal);
      try {
        if (lease.reassigned) await this.#takeOver(lease);
        await lease.slot.sequence.clearHistory(); // scored from a clean sequence: no saved or cached state stands for it
        this.#saved.delete(lease.slot.sequence);
        return await scoreReply(this.#loaded.model, lease.slot.sequence, this.#loaded.firstToken, request, reply, TRIM_TO_FRACTION);
      } finally {
        lease.release();
      }
    } finally {
      untrack();
    }
  }

  /** Forgets the channel's KV state, in memory and on disk. */
  async forget(channelId: string): Promise<void> {
    this.#slots.forget(channelId);
    await this.#cache?.drop(channelId);
  }

  /**
   * Saves the state of every channel holding a sequence that is not saved yet, the idle ones
   * first and the most recently answered first among them; a generating one once it is done.
   * Stops at `deadlineAt` (ms since the epoch). Returns how many states were written.
   */
  async saveAll(deadlineAt: number): Promise<number> {
    if (!this.#cache) return 0;
    // Tracked, so a close() meanwhile frees nothing under a save.
    const untrack = this.#begin();
    try {
      return await this.#saveAll(deadlineAt);
    } finally {
      untrack();
    }
  }

  async #saveAll(deadlineAt: number): Promise<number> {
    const deadline = AbortSignal.timeout(Math.max(0, deadlineAt - Date.now()));
    let written = 0;
    for (const channelId of this.#slots.holders()) {
      let lease: Lease<LlamaContextSequence> | null;
      try {
        lease = await this.#slots.acquireOwn(channelId, deadline);
      } catch {
        break;
      }
      if (!lease) continue;
      try {
        if (this.#unsavedTokens(lease.slot) > 0 && (await this.#save(channelId, lease.slot.sequence, lease.slot.firstTurnAt))) written++;
      } finally {
        lease.release();
      }
      if (deadline.aborted) break;
    }
    return written;
  }

  /** Settles once no generation or save touches a sequence (after the closing signal has ended them). */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.#inFlight]);
  }

  #track(working: Promise<void>): void {
    this.#inFlight.add(working);
    void working.finally(() => this.#inFlight.delete(working));
  }

  /** Tracks work from now until the returned function is called (more than once is harmless). */
  #begin(): () => void {
    let done!: () => void;
    this.#track(new Promise<void>((resolve) => (done = resolve)));
    return done;
  }

  /**
   * Counts an answered turn of the sequence's owner; every `saveEveryTurns` turns, saves its state
   * once the generation has let go of the sequence, so a SIGKILL loses at most that many turns.
   */
  #countTurn(channelId: string, sequence: LlamaContextSequence): void {
    if (!this.#cache || this.#saveEveryTurns === 0) return;
    const turns = (this.#turnsSinceSave.get(sequence) ?? 0) + 1;
    this.#turnsSinceSave.set(sequence, turns);
    if (turns >= this.#saveEveryTurns) this.#track(this.#saveOwn(channelId));
  }

  /** Saves the channel's state if it still holds its sequence and has something unsaved; never throws. */
  async #saveOwn(channelId: string): Promise<void> {
    let lease: Lease<LlamaContextSequence> | null;
    try {
      lease = await this.#slots.acquireOwn(channelId, this.#closing);
    } catch {
      return; // closing: the graceful stop saves what it can
    }
    if (!lease) return; // the sequence went to another channel, which saved this one's state first
    try {
      if (this.#unsavedTokens(lease.slot) > 0) await this.#save(channelId, lease.slot.sequence, lease.slot.firstTurnAt);
    } finally {
      lease.release();
    }
  }

  async *generate(request: GenerateRequest, signal: AbortSignal): AsyncGenerator<string, LocalGenerationStats, undefined> {
    const { channelId } = request;
    const loaded = this.#loaded;
    let lease: Lease<LlamaContextSequence>;
    try {
      lease = await this.#slots.acquire(channelId, signal);
    } catch (err) {
      if (signal.aborted) throw this.abortedError(request, 0);
      throw err;
    }
    // Tracked until llama.cpp is done with the sequence, which does not wait for a paused reader.
    const untrack = this.#begin();
    // Aborted when the reader stops early (return() on this generator): the decode loop drops the sequence.
    const readerGone = new AbortController();
    let job: Promise<DecodeJobEnd> | undefined;
    let sampled = 0;
    const started = performance.now();
    let firstTokenMs = Number.NaN;
    try {
      const sequence = lease.slot.sequence;
      const { model } = loaded;
      const record = lease.reassigned ? await this.#takeOver(lease) : undefined;
      if (record?.firstTurnAt !== undefined) lease.slot.firstTurnAt = record.firstTurnAt;

      // The reply may use at most half the sequence, so the prompt always keeps some room.
      const { budget, maxTokens } = promptBudget(sequence.contextSize, request.maxTokens, loaded.firstToken !== null);
      const fit = fitPrompt({
        turns: request.turns,
        firstTurnAt: lease.slot.firstTurnAt,
        budget,
        trimToFraction: TRIM_TO_FRACTION,
        // Tokens, not the string: node-llama-cpp trims a string's leading space before tokenizing.
        encode: (turns) => model.tokenize(renderScript(request.persona, turns)),
      });
      if (!fit) {
        throw new BackendError(
          "too_long",
          `The newest message does not fit the local model's context of ${sequence.contextSize} tokens per channel (LLAMA_CONTEXT_SIZE).`,
        );
      }
      if (fit.trimmed) this.#log.info({ channelId, droppedTurns: fit.start }, "local prompt trimmed to fit the context");

      const fresh = loaded.firstToken === null ? [...fit.tokens] : [loaded.firstToken, ...fit.tokens];
      const restoredPromptTokens = record ? await this.#restore(channelId, sequence, record.tokens as Token[], fresh, signal) : 0;
      // The previous reply as the model sampled it, where its text is unchanged, so its cache stays valid.
      const reused = reuseCachedTokens(sequence.contextTokens, fresh, tokenCodec(model));
      const input = reused.length + maxTokens < sequence.contextSize ? reused : fresh;
      const { evaluated, tail } = await prefill(sequence, input, signal);
      lease.slot.firstTurnAt = request.turns[fit.start]?.at;

      const chunks = new ChunkQueue<string>();
      const text = new TokenText(model);
      const stops = new StopScanner(request.stop);
      const reply: Token[] = [];
      let stopReason: LocalStopReason = "maxTokens";
      const release = (piece: string): void => {
        if (piece) chunks.push(piece);
      };
      job = this.#decoder
        .run({
          // The prompt's tail is decoded in the same pass that samples the first reply token.
          tokens: sequence.evaluate(tail, {
            temperature: request.temperature,
            ...(request.seed !== undefined ? { seed: request.seed } : {}),
            topK: TOP_K,
            ...(request.temperature > 0 ? { topP: request.topP } : {}),
            repeatPenalty: {
              punishTokens: () => reply.slice(-REPEAT_PENALTY_TOKENS).filter((t) => t !== model.tokens.nl),
              maxPunishTokens: REPEAT_PENALTY_TOKENS,
            },
          }),
          signal: AbortSignal.any([signal, readerGone.signal]),
          accept: (token) => {
            if (sampled++ === 0) firstTokenMs = performance.now() - started;
            reply.push(token);
            const scan = stops.push(text.push(token));
            release(scan.text);
            if (scan.stopped) {
              stopReason = "stop";
              return false;
            }
            return sampled < maxTokens;
          },
        })
        .then((end) => {
          if (end === "aborted") {
            if (!signal.aborted) this.#log.debug({ channelId, completionTokens: sampled }, "local generation ended by its reader");
            return end;
          }
          // Text held back as a possible stop is the reply's after all, up to a stop it holds.
          const last = stops.flush();
          release(last.text);
          if (last.stopped) stopReason = "stop";
          else if (end === "eog") stopReason = "eos";
          return end;
        })
        .finally(() => {
          chunks.end();
          untrack();
        });
      job.catch(() => undefined); // observed below; this keeps an early exit from leaving it unhandled

      for await (const chunk of chunks) yield chunk;
      await job;
      signal.throwIfAborted();

      const stats: LocalGenerationStats = {
        promptTokens: input.length,
        completionTokens: sampled,
        evaluatedPromptTokens: evaluated,
        restoredPromptTokens,
        stopReason,
        droppedTurns: fit.start,
        firstTokenMs,
      };
      this.#log.debug({ channelId, ...stats, ms: Math.round(performance.now() - started) }, "local generation");
      return stats;
    } catch (err) {
      if (signal.aborted) throw this.abortedError(request, sampled);
      if (err instanceof BackendError) throw err;
      throw new BackendError("unknown", `Local generation failed: ${(err as Error).message}`, { cause: err });
    } finally {
      // Also reached when the reader stops early (return()): end the decoding before freeing the sequence.
      readerGone.abort();
      await job?.catch(() => undefined);
      // A reply the reader ended early (its cleaner saw another speaker) counts too: the sequence holds what it read.
      if (sampled > 0 && !signal.aborted) this.#countTurn(channelId, lease.slot.sequence);
      lease.release();
      untrack();
    }
  }

  abortedError(request: GenerateRequest, completionTokens: number): BackendError {
    const why = this.#closing.aborted && !request.signal.aborted ? "the local backend is closing" : "the request was aborted";
    this.#log.debug({ channelId: request.channelId, completionTokens, stopReason: "abort" }, "local generation aborted");
    return new BackendError("aborted", `Local generation in channel ${request.channelId} stopped after ${completionTokens} tokens: ${why}.`);
  }

  /**
   * A sequence taken over for the lease's channel: saves what the previous owner's state holds that
   * is not saved yet, clears it (another channel's transcript must never leak into this one), and
   * returns the new owner's saved state, if it has one.
   */
  async #takeOver(lease: Lease<LlamaContextSequence>): Promise<{ tokens: readonly number[]; firstTurnAt?: number } | undefined> {
    const { sequence } = lease.slot;
    if (lease.evicted && this.#unsavedTokens(lease.slot) > 0) await this.#save(lease.evicted.channelId, sequence, lease.evicted.firstTurnAt);
    this.#saved.delete(sequence);
    this.#turnsSinceSave.delete(sequence);
    await sequence.clearHistory();
    return this.#cache?.find(lease.slot.channelId!);
  }

  /**
   * Loads the channel's saved state into the (cleared) sequence when it shares enough of the new
   * prompt to be worth it and is still whole. Returns the prompt tokens it provides. On any
   * failure the sequence is cleared again and the prompt is evaluated.
   */
  async #restore(channelId: string, sequence: LlamaContextSequence, tokens: readonly Token[], fresh: readonly Token[], signal: AbortSignal): Promise<number> {
    const cache = this.#cache!;
    const wanted = reuseCachedTokens(tokens, fresh, tokenCodec(this.#loaded.model));
    const shared = commonPrefix(tokens, wanted);
    if (shared < MIN_RESTORED_TOKENS) return 0;
    const record = await cache.find(channelId);
    const path = record ? await cache.verify(record) : undefined;
    if (!path || signal.aborted) return 0;
    try {
      await sequence.loadStateFromFile(path, { acceptRisk: true });
      // The file carries its own token list: it must be the one recorded.
      if (!sameTokens(sequence.contextTokens, record!.tokens)) throw new Error("the state holds other tokens than its record");
    } catch (err) {
      this.#log.warn({ channelId, err }, "could not load a channel's saved state; evaluating instead");
      await sequence.clearHistory();
      await cache.drop(channelId);
      return 0;
    }
    this.#saved.set(sequence, record!.tokens as Token[]);
    this.#log.debug({ channelId, tokens: record!.tokens.length, shared }, "channel state restored");
    return shared;
  }

  /** Writes the sequence's state as `channelId`'s; true when it was kept. */
  async #save(channelId: string, sequence: LlamaContextSequence, firstTurnAt: number | undefined): Promise<boolean> {
    const tokens = [...sequence.contextTokens];
    if (!this.#cache || tokens.length === 0) return false;
    const bytes = await this.#cache.save(channelId, { tokens, firstTurnAt }, async (path) => {
      await sequence.saveStateToFile(path);
    });
    if (bytes === undefined) return false;
    this.#saved.set(sequence, tokens);
    this.#turnsSinceSave.delete(sequence);
    this.#log.debug({ channelId, tokens: tokens.length, bytes }, "channel state saved");
    return true;
  }

  /** What giving up the slot costs: the tokens its sequence holds past what its saved state covers. */
  #unsavedTokens(slot: Slot<LlamaContextSequence>): number {
    const held = slot.sequence.contextTokens;
    return held.length - commonPrefix(held, this.#saved.get(slot.sequence) ?? []);
  }
}

/**
 * Evaluates the prompt into the sequence up to its tail, reusing the cached prefix, in chunks so
 * an abort is noticed between them. The tail (at least one token) is left for the decode that
 * samples the first reply token, so no pass over the weights is spent on it alone.
 * Returns the tail and how many prompt tokens are evaluated in all (the rest came from the cache).
 */
async function prefill(sequence: LlamaContextSequence, input: readonly Token[], signal: AbortSignal): Promise<{ evaluated: number; tail: Token[] }> {
  // Erases whatever follows the common prefix (the previous reply's tail, an old window start).
  // At least the last token stays to evaluate: its logits give the first reply token.
  await sequence.adaptStateToTokens(input.slice(0, -1), false);
  const from = sequence.nextTokenIndex;
  const tailStart = from + Math.floor((input.length - 1 - from) / PREFILL_CHUNK) * PREFILL_CHUNK;
  for (let i = from; i < tailStart; i += PREFILL_CHUNK) {
    signal.throwIfAborted();
    await sequence.evaluateWithoutGeneratingNewTokens(input.slice(i, i + PREFILL_CHUNK));
  }
  signal.throwIfAborted();
  return { evaluated: input.length - from, tail: input.slice(tailStart) };
}

function tokenCodec(model: LlamaModel): TokenCodec<Token> {
  return {
    detokenize: (tokens, before) => model.detokenize(tokens, false, before),
    tokenizeContinuation: (text) => model.tokenize(text, false, "trimLeadingSpace"),
  };
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}

function sameTokens(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && commonPrefix(a, b) === a.length;
}
