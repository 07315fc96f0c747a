/**
 * Settles like `promise`, or rejects with the signal's reason as soon as it aborts. The promise
 * itself goes on (its rejection is swallowed): use it where the work cannot be stopped, only
 * no longer waited for.
 */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  promise.catch(() => {});
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** Settles like `promise`, or rejects with `onTimeout()` after `ms` (the promise itself goes on). */
export function withinDeadline<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(onTimeout()), ms);
  return untilAborted(promise, deadline.signal).finally(() => clearTimeout(timer));
}
