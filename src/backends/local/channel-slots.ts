/**
 * Which context sequence serves which channel. A context has a fixed number of sequences (each
 * with its own KV cache); channels borrow them. A channel keeps its sequence between turns so its
 * cache can be reused. When more channels are active than there are sequences, an idle one is
 * taken over (never one that is generating): the one cheapest to rebuild, the least recently used
 * among equals. Its new owner saves the old owner's state, if it is worth saving, and clears it.
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
  /** The channel the slot was taken from, with what it held: its state may be saved before clearing. */
  evicted?: { channelId: string; firstTurnAt?: number };
  release(): void;
}

export class ChannelSlots<S> {
  private readonly slots: Slot<S>[];
  private clock = 0;
  private waiters: Array<() => void> = [];

  /**
   * `rebuildCost`: what giving up a slot's state would cost, e.g. the tokens it holds that are not
   * saved anywhere. Default: nothing, so the least recently used goes.
   */
  constructor(
    sequences: readonly S[],
    private readonly rebuildCost: (slot: Slot<S>) => number = () => 0,
  ) {
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

  /**
   * Borrows the channel's own sequence, waiting while it is busy; null when the channel holds none
   * (it was never here, or its sequence went to another channel meanwhile).
   */
  async acquireOwn(channelId: string, signal?: AbortSignal): Promise<Lease<S> | null> {
    for (;;) {
      signal?.throwIfAborted();
      const own = this.slots.find((s) => s.channelId === channelId);
      if (!own) return null;
      if (!own.busy) return this.lease(own, false);
      await this.waitForRelease(signal);
    }
  }

  /** The channels holding a sequence: the idle ones first, each group the most recently used first. */
  holders(): string[] {
    return this.slots
      .filter((s) => s.channelId !== null)
      .sort((a, b) => Number(a.busy) - Number(b.busy) || b.lastUsed - a.lastUsed)
      .map((s) => s.channelId!);
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
    let cheapest: { slot: Slot<S>; cost: number } | null = null;
    for (const slot of this.slots) {
      if (slot.busy) continue;
      // A slot nobody holds costs nothing to take.
      const cost = slot.channelId === null ? -1 : this.rebuildCost(slot);
      if (!cheapest || cost < cheapest.cost || (cost === cheapest.cost && slot.lastUsed < cheapest.slot.lastUsed)) cheapest = { slot, cost };
    }
    if (!cheapest) return null;
    const { slot } = cheapest;
    const evicted = slot.channelId === null ? undefined : { channelId: slot.channelId, firstTurnAt: slot.firstTurnAt };
    slot.channelId = channelId;
    slot.firstTurnAt = undefined;
    return this.lease(slot, true, evicted);
  }

  private lease(slot: Slot<S>, reassigned: boolean, evicted?: Lease<S>["evicted"]): Lease<S> {
    slot.busy = true;
    slot.lastUsed = ++this.clock;
    let released = false;
    return {
      slot,
      reassigned,
      ...(evicted ? { evicted } : {}),
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
