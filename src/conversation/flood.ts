const MINUTE_MS = 60_000;

export type FloodVerdict = "allow" | "warn" | "ignore";

/**
 * Per-user flood control over a sliding minute: past `perMinute` messages a user gets one warning,
 * then is ignored until their rate drops. Memory stays bounded: at most `perMinute + 1`
 * timestamps per user, and users quiet for a minute are forgotten.
 */
export class FloodGate {
  readonly #recent = new Map<string, { times: number[]; warned: boolean }>();
  #lastSweep = 0;

  constructor(private readonly perMinute: number) {}

  check(userId: string, now = Date.now()): FloodVerdict {
    this.#sweep(now);
    let user = this.#recent.get(userId);
    if (!user) this.#recent.set(userId, (user = { times: [], warned: false }));
    while (user.times.length > 0 && user.times[0]! <= now - MINUTE_MS) user.times.shift();
    if (user.times.length < this.perMinute) {
      user.times.push(now);
      user.warned = false;
      return "allow";
    }
    // Over the limit: the ignored message does not extend the window, so a user who stops waits at most a minute.
    if (user.warned) return "ignore";
    user.warned = true;
    return "warn";
  }

  get trackedUsers(): number {
    return this.#recent.size;
  }

  #sweep(now: number): void {
    if (now - this.#lastSweep < MINUTE_MS) return;
    this.#lastSweep = now;
    for (const [id, user] of this.#recent) if ((user.times.at(-1) ?? 0) <= now - MINUTE_MS) this.#recent.delete(id);
  }
}
