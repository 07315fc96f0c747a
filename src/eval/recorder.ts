import { BackendError, type Backend, type BackendInfo, type GenerateRequest, type GenerationStats, type StopReason } from "../core/backend.ts";

/** How one generation ended, as the eval reports it: the backend's reason, the bot's cleaner, or an error. */
export type AttemptEnd = StopReason | "cleaner" | "error";

/** One generation the bot asked for while answering an item (a second one when the first was empty after cleaning). */
export interface Attempt {
  request: GenerateRequest;
  raw: string;
  end: AttemptEnd;
  /** From the backend's first step to its first text. */
  firstTextMs?: number;
  /** From the backend's first step to its last. */
  ms: number;
  completionTokens?: number;
  promptTokens?: number;
  error?: { kind: string; message: string };
}

/**
 * Wraps a backend to record what the bot's own reply path did with it: the raw text, how each
 * generation ended and its timings. It changes nothing on the way: the same requests (plus the
 * run's seed), the same chunks, and a stop by the cleaner (`return()`) reaches the backend at once.
 */
export class RecordingBackend implements Backend {
  readonly name: Backend["name"];
  readonly #attempts = new Map<string, Attempt[]>();

  constructor(
    readonly inner: Backend,
    /** The seed for a channel's n-th generation, or undefined to sample afresh. */
    private readonly seedFor: (channelId: string, attempt: number) => number | undefined,
  ) {
    this.name = inner.name;
  }

  /** The generations made for a channel so far, and forgets them. */
  take(channelId: string): Attempt[] {
    const attempts = this.#attempts.get(channelId) ?? [];
    this.#attempts.delete(channelId);
    return attempts;
  }

  describe(): BackendInfo {
    return this.inner.describe();
  }

  async prepare(): Promise<void> {
    await this.inner.prepare?.();
  }

  resetChannel(channelId: string): void {
    this.inner.resetChannel?.(channelId);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  async *generate(request: GenerateRequest): AsyncGenerator<string, GenerationStats | void, undefined> {
    const list = this.#attempts.get(request.channelId) ?? [];
    this.#attempts.set(request.channelId, list);
    const seed = this.seedFor(request.channelId, list.length);
    const sent = seed === undefined ? request : { ...request, seed };
    const attempt: Attempt = { request: sent, raw: "", end: "cleaner", ms: 0 };
    list.push(attempt);
    const started = performance.now();
    const stream = this.inner.generate(sent);
    let ended = false;
    try {
      for (;;) {
        const next = await stream.next();
        if (next.done) {
          ended = true;
          const stats = next.value ?? undefined;
          attempt.end = stats?.stopReason ?? "eos";
          attempt.completionTokens = stats?.completionTokens;
          attempt.promptTokens = stats?.promptTokens;
          return stats;
        }
        attempt.firstTextMs ??= performance.now() - started;
        attempt.raw += next.value;
        yield next.value;
      }
    } catch (err) {
      ended = true;
      attempt.end = "error";
      attempt.error = { kind: err instanceof BackendError ? err.kind : "unknown", message: (err as Error).message };
      throw err;
    } finally {
      attempt.ms = performance.now() - started;
      // Reached without an end when the bot's cleaner cut the reply and stopped reading.
      if (!ended) await stream.return(undefined).catch(() => undefined);
    }
  }
}
