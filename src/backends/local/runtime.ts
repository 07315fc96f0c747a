import { getLlama, LlamaLogLevel, type Llama } from "node-llama-cpp";

/** Receives llama.cpp's log lines (warnings and errors). */
export type LlamaLogSink = (level: LlamaLogLevel, message: string) => void;

const sinks = new Set<LlamaLogSink>();
const runtimes = new Map<"gpu-auto" | "cpu", Promise<Llama>>();

/**
 * The process-wide llama.cpp runtime. llama.cpp has one global log callback, and a second `Llama`
 * instance takes it over from the first, so every LocalBackend shares one runtime and subscribes
 * to its log through `onLlamaLog` instead of creating its own.
 *
 * Uses the prebuilt binary only (`build: "never"`): no source build and no download, so start-up
 * works offline. With `gpu` it picks CUDA/Vulkan/Metal when a GPU is present, CPU otherwise.
 */
export function llamaRuntime(options: { gpu: boolean; threads: number }): Promise<Llama> {
  const key = options.gpu ? "gpu-auto" : "cpu";
  let runtime = runtimes.get(key);
  if (!runtime) {
    runtime = getLlama({
      gpu: options.gpu ? "auto" : false,
      build: "never",
      // node-llama-cpp defaults to max(cores, 4) threads: on 2 cores that was measured 15× slower.
      maxThreads: options.threads,
      logLevel: LlamaLogLevel.warn,
      logger: (level, message) => {
        for (const sink of sinks) sink(level, message);
      },
    });
    runtimes.set(key, runtime);
    // A failed start (no binary for this platform) may be retried later.
    runtime.catch(() => runtimes.delete(key));
  }
  return runtime.then((llama) => {
    if (llama.maxThreads !== 0 && llama.maxThreads < options.threads) llama.maxThreads = options.threads;
    return llama;
  });
}

/** Subscribes to llama.cpp's log; returns the unsubscribe function. */
export function onLlamaLog(sink: LlamaLogSink): () => void {
  sinks.add(sink);
  return () => sinks.delete(sink);
}
