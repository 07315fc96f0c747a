export interface DeadlineOptions<T> {
  /** Milliseconds before giving up. */
  ms: number;
  /** Also gives up (with this signal's reason) when it aborts, e.g. when the backend closes. */
  signal?: AbortSignal;
  /** The error to reject with at the deadline. */
  timeoutError: () => Error;
  /** Receives a value that arrives after giving up, so it can be freed instead of leaked. */
  onLate: (value: T) => void | Promise<void>;
}

/**
 * Runs `start` with a signal that aborts at the deadline, and rejects then without waiting for it:
 * the work may not notice the signal for a long time (llama.cpp checks it only between steps). If
 * it still resolves afterwards, `onLate` gets the value; a late rejection is dropped.
 */
export function withDeadline<T>(start: (signal: AbortSignal) => Promise<T>, options: DeadlineOptions<T>): Promise<T> {
  if (options.signal?.aborted) return Promise.reject(options.signal.reason);
  const controller = new AbortController();
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const giveUp = (reason: unknown): void => {
      if (settled) return;
      settled = true;
      controller.abort(reason);
      reject(reason);
    };
    const timer = setTimeout(() => giveUp(options.timeoutError()), options.ms);
    const onAbort = (): void => giveUp(options.signal!.reason);
    options.signal?.addEventListener("abort", onAbort, { once: true });
    const done = (): void => {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
    };

    let work: Promise<T>;
    try {
      work = start(controller.signal);
    } catch (err) {
      work = Promise.reject(err);
    }
    work.then(
      (value) => {
        done();
        if (!settled) {
          settled = true;
          resolve(value);
        } else {
          void Promise.resolve()
            .then(() => options.onLate(value))
            .catch(() => undefined);
        }
      },
      (err: unknown) => {
        done();
        if (!settled) {
          settled = true;
          reject(err);
        }
      },
    );
  });
}
