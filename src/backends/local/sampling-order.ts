/**
 * Works around a data race between llama.cpp and node-llama-cpp 3.21.1 that made a sequence
 * sample a token from another sequence's logits when several share a decode.
 *
 * node-llama-cpp decodes one batch, then starts one `sampleToken` worker per sequence that wants a
 * token, all at once on libuv's thread pool (LlamaContext.js, decodeTokenBatchItems). Each worker
 * begins with `llama_get_logits`, and llama.cpp applies the output-row reordering that the decode
 * left pending there, in `llama_context::output_reorder()`: it swaps whole logit rows and then
 * clears the list of swaps, with no lock. The reordering is pending whenever the decode split the
 * batch into micro-batches out of its order, which llama.cpp does for a batch of several sequences
 * whose ids are not in increasing order, or that mixes a sequence's several tokens with others'
 * (a non-unified KV cache splits with `split_equal(…, sequential = true)`). Two workers then swap
 * the same rows at once: rows end up swapped twice or half swapped, and a sequence samples from
 * another's logits or from a mix of two rows.
 *
 * Here the first `sampleToken` after each decode runs alone; it applies the reordering, and the
 * others, which then find nothing left to reorder, run after it, in parallel as before.
 */
import type { LlamaContext } from "node-llama-cpp";

/** The parts of node-llama-cpp's native context (`LlamaContext._ctx`, internal) this wraps. */
interface NativeContext {
  decodeBatch(): Promise<unknown>;
  sampleToken(...args: unknown[]): Promise<unknown>;
}

/** Makes the context's first sampling after each decode run before the others start. */
export function sampleFirstAloneAfterDecode(context: LlamaContext): void {
  const native = (context as unknown as { _ctx?: Partial<NativeContext> })._ctx;
  if (typeof native?.decodeBatch !== "function" || typeof native.sampleToken !== "function") {
    throw new Error("node-llama-cpp's context has no _ctx.decodeBatch and _ctx.sampleToken to order sampling with (was node-llama-cpp upgraded?)");
  }
  const decodeBatch = native.decodeBatch.bind(native);
  const sampleToken = native.sampleToken.bind(native);
  /** A decode finished and no sampling has started since: the next one reorders the outputs. */
  let reorderPending = false;
  /** The sampling that reordered the last decode's outputs; the others wait for it. */
  let reordering: Promise<unknown> = Promise.resolve();
  // The addon's methods are read-only on its prototype: define own properties that shadow them.
  override(native, "decodeBatch", async () => {
    try {
      return await decodeBatch();
    } finally {
      reorderPending = true;
    }
  });
  override(native, "sampleToken", (...args: unknown[]) => {
    if (!reorderPending) {
      const run = () => sampleToken(...args);
      return reordering.then(run, run);
    }
    const first = sampleToken(...args); // may throw at once, before any worker started: the next call goes first then
    reorderPending = false;
    reordering = first;
    return first;
  });
}

function override<K extends keyof NativeContext>(native: Partial<NativeContext>, name: K, method: NativeContext[K]): void {
  Object.defineProperty(native, name, { value: method, writable: true, configurable: true, enumerable: false });
}
