import type { BackendName } from "../core/backend.ts";

/**
 * Admission to the backends: each backend has its own limit on concurrent generations, so a slow
 * or cold local model never delays an OpenAI channel, and the other way round. Waiting is in
 * arrival order and can be abandoned through a signal.
 */
export class Admission {
  readonly #free: Map<BackendName, number>;
  readonly #waiting = new Map<BackendName, (() => void)[]>();

  constructor(limits: Record<BackendName, number>) {
    this.#free = new Map(Object.entries(limits) as [BackendName, number][]);
  }

  /** Resolves with a release function once `backend` has room; rejects with the signal's reason if it aborts first. */
  acquire(backend: BackendName, signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      const next = this.#queue(backend).shift();
      if (next) next();
      else this.#free.set(backend, this.#free.get(backend)! + 1);
    };
    const free = this.#free.get(backend)!;
    if (free > 0) {
      this.#free.set(backend, free - 1);
      return Promise.resolve(release);
    }
    return new Promise((resolve, reject) => {
      const wake = (): void => {
        signal?.removeEventListener("abort", onAbort);
        resolve(release);
      };
      const onAbort = (): void => {
        const queue = this.#queue(backend);
        queue.splice(queue.indexOf(wake), 1);
        reject(signal!.reason);
      };
      this.#queue(backend).push(wake);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  #queue(backend: BackendName): (() => void)[] {
    let queue = this.#waiting.get(backend);
    if (!queue) this.#waiting.set(backend, (queue = []));
    return queue;
  }
}
