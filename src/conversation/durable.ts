/** How often writes that failed are tried again. */
const RETRY_MS = 1000;
/** Writes kept for a store that does not come back; past this the oldest are given up, with a log line. */
const MAX_WAITING = 10_000;

interface Write {
  what: string;
  run: () => void;
}

export interface DurableWritesOptions {
  /** A write failed (first failure of a streak only, so a long outage logs once). */
  onFailure(err: unknown, what: string): void;
  /** Every waiting write has landed. */
  onRecovered?(): void;
  /** Writes were given up because too many waited. */
  onGivenUp?(count: number): void;
  retryMs?: number;
}

/**
 * The store writes of every channel, in order, surviving a bad moment on the host. A write that
 * fails (a lock another process holds, a full disk) is kept and tried again every second, and the
 * writes after it wait behind it, untried until it lands: a /reset that failed is never overtaken
 * by the turns that follow, and a reply that was posted is recorded as answered once the store is
 * back, so catch-up after a later restart does not answer it again.
 */
export class DurableWrites {
  readonly #waiting: Write[] = [];
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(private readonly options: DurableWritesOptions) {}

  /** Writes not yet durable. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Runs the write now, after the writes still waiting (tried again first); true when it is durable
   * now. During an outage (a retry is armed) it only joins the queue: a flood of messages must not
   * try a locked or failing store once each (each try can block for SQLite's busy timeout).
   */
  write(what: string, run: () => void): boolean {
    this.#waiting.push({ what, run });
    this.#trim();
    if (this.#timer) return false;
    return this.flush();
  }

  /** Tries the waiting writes in order, stopping at the first that fails; true when none is left. */
  flush(): boolean {
    const hadWaiting = this.#waiting.length > 0;
    while (this.#waiting.length > 0) {
      const next = this.#waiting[0]!;
      try {
        next.run();
      } catch (err) {
        if (!this.#timer) this.options.onFailure(err, next.what);
        this.#arm();
        return false;
      }
      this.#waiting.shift();
    }
    if (this.#timer) {
      clearInterval(this.#timer);
      this.#timer = undefined;
      if (hadWaiting) this.options.onRecovered?.();
    }
    return true;
  }

  /** One last try (at shutdown); stops retrying. */
  close(): boolean {
    this.#closed = true;
    const done = this.flush();
    clearInterval(this.#timer);
    this.#timer = undefined;
    return done;
  }

  #arm(): void {
    if (this.#timer || this.#closed) return;
    this.#timer = setInterval(() => this.flush(), this.options.retryMs ?? RETRY_MS);
    this.#timer.unref();
  }

  #trim(): void {
    const excess = this.#waiting.length - MAX_WAITING;
    if (excess <= 0) return;
    // The first write is the one being retried; give up the ones right after it.
    this.#waiting.splice(1, excess);
    this.options.onGivenUp?.(excess);
  }
}
