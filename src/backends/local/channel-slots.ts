/**
 * Which context sequence serves which channel. A context has a fixed number of sequences (each
 * with its own KV cache); channels borrow them. A channel keeps its sequence between turns so its
 * cache can be reused; when more channels are active than there are sequences, the least recently
 * used idle one is taken over, and the new owner must clear it first.
 */

/** One sequence and what it currently holds. */
export interface Slot<S> {
  readonly sequence: S;
  /** The channel whose transcript is in the sequence, or null when it holds nobody's. */
  channelId: string | null;
  /** Higher is more recent. */
  lastUsed: number;
  busy: boolean;
  /** `at` of the oldest turn rendered into the cached prompt; kept so the prompt stays a stable prefix. */
  firstTurnAt?: number;
}

export interface Lease<S> {
  slot: Slot<S>;
  /** True when the slot was taken from another channel (or was empty): clear its state before use. */
  reassigned: boolean;
  release(): void;
}

export class ChannelSlots<S> {
  private readonly slots: Slot<S>[];
  private clock = 0;
  private waiters: Array<() => void> = [];

  constructor(sequences: readonly S[]) {
    if (sequences.length === 0) throw new Error("ChannelSlots needs at least one sequence");
    this.slots = sequences.map((sequence) => ({ sequence, channelId: null, lastUsed: -1, busy: false }));
  }

  get size(): number {
    return this.slots.length;
  }

  /** The channel that owns each slot, in slot order (for logs and tests). */
  owners(): Array<string | null> {
    return this.slots.map((s) => s.channelId);
  }

  /**
   * Borrows the channel's sequence, or the least recently used idle one. Waits while the channel's
   * own sequence is busy (one generation per channel at a time) or while every sequence is busy.
   */
  async acquire(channelId: string, signal?: AbortSignal): Promise<Lease<S>> {
    for (;;) {
      signal?.throwIfAborted();
      const lease = this.tryAcquire(channelId);
      if (lease) return lease;
      await this.waitForRelease(signal);
    }
  }

  /** Forgets the channel's state: its sequence will be cleared before anyone uses it again. */
  forget(channelId: string): void {
    for (const slot of this.slots) {
      if (slot.channelId !== channelId) continue;
      slot.channelId = null;
      slot.firstTurnAt = undefined;
      // A busy slot keeps serving the generation in flight; it is reassigned (and cleared) afterwards.
      if (!slot.busy) slot.lastUsed = -1;
    }
  }

  private tryAcquire(channelId: string): Lease<S> | null {
    const own = this.slots.find((s) => s.channelId === channelId);
    if (own) return own.busy ? null : this.lease(own, false);
    let oldest: Slot<S> | null = null;
    for (const slot of this.slots) {
      if (!slot.busy && (!oldest || slot.lastUsed < oldest.lastUsed)) oldest = slot;
    }
    if (!oldest) return null;
    oldest.channelId = channelId;
    oldest.firstTurnAt = undefined;
    return this.lease(oldest, true);
  }

  private lease(slot: Slot<S>, reassigned: boolean): Lease<S> {
    slot.busy = true;
    slot.lastUsed = ++this.clock;
    let released = false;
    return {
      slot,
      reassigned,
      release: () => {
        if (released) return;
        released = true;
        slot.busy = false;
        slot.lastUsed = slot.channelId === null ? -1 : ++this.clock;
        const waiters = this.waiters;
        this.waiters = [];
        for (const wake of waiters) wake();
      },
    };
  }

  private waitForRelease(signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.waiters = this.waiters.filter((w) => w !== wake);
        reject(signal!.reason);
      };
      const wake = (): void => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      this.waiters.push(wake);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
}
