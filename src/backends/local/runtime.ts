import { getLlama, LlamaLogLevel, type Llama, type LlamaOptions } from "node-llama-cpp";
import type { Logger } from "pino";
import type { LlamaBuildChoice } from "../../config/local-defaults.ts";
import { applyOpenMpWaitEnv, cpuMismatch, findLocalBuild, NATIVE_CMAKE_OPTIONS } from "./llama-build.ts";

/** Receives llama.cpp's log lines (warnings and errors). */
export type LlamaLogSink = (level: LlamaLogLevel, message: string) => void;

/** The binary a runtime actually runs, for the start-up log and /status. */
export interface LlamaBinary {
  kind: LlamaBuildChoice;
  /** One line, e.g. `native build (cpu, GGML_NATIVE=ON GGML_OPENMP=ON)` or `prebuilt (cuda)`. */
  description: string;
  /** Set when the native build was asked for but the prebuilt runs: why it could not be used. */
  fallback?: string;
}

export interface LlamaRuntimeOptions {
  gpu: boolean;
  threads: number;
  /** Default "prebuilt". "native" uses the native build when it exists and loads, else the prebuilt. */
  build?: LlamaBuildChoice;
  /** Gets the binary line (and the reason for a fallback) when this call starts the runtime. */
  logger?: Logger;
  /** The native build's cmake options; only tests change them. */
  nativeCmakeOptions?: Readonly<Record<string, string>>;
}

const sinks = new Set<LlamaLogSink>();
const runtimes = new Map<string, Promise<Llama>>();
const binaries = new WeakMap<Llama, LlamaBinary>();

/**
 * The process-wide llama.cpp runtime. llama.cpp has one global log callback, and a second `Llama`
 * instance takes it over from the first, so every LocalBackend shares one runtime and subscribes
 * to its log through `onLlamaLog` instead of creating its own.
 *
 * Never builds or downloads anything (`build: "never"`), so start-up works offline:
 * - `prebuilt`: node-llama-cpp's prebuilt binary. With `gpu` it picks CUDA/Vulkan/Metal when a GPU
 *   is present, CPU otherwise.
 * - `native`: the CPU build that `npm run build:llama` made, if it exists, was built for this CPU
 *   and loads; otherwise the prebuilt, with a warning that says why. Never a broken binary.
 */
export function llamaRuntime(options: LlamaRuntimeOptions): Promise<Llama> {
  const build = options.build ?? "prebuilt";
  const nativeOptions = options.nativeCmakeOptions ?? NATIVE_CMAKE_OPTIONS;
  const key = `${options.gpu ? "gpu-auto" : "cpu"}:${build}:${build === "native" ? JSON.stringify(nativeOptions) : ""}`;
  let runtime = runtimes.get(key);
  if (!runtime) {
    runtime = startRuntime(options, build, nativeOptions);
    runtimes.set(key, runtime);
    // A failed start (no binary for this platform) may be retried later.
    runtime.catch(() => runtimes.delete(key));
  }
  return runtime.then((llama) => {
    if (llama.maxThreads !== 0 && llama.maxThreads < options.threads) llama.maxThreads = options.threads;
    return llama;
  });
}

/** What `llama` runs, as chosen by `llamaRuntime`. */
export function llamaBinary(llama: Llama): LlamaBinary {
  return binaries.get(llama) ?? describeBinary(llama);
}

/** Subscribes to llama.cpp's log; returns the unsubscribe function. */
export function onLlamaLog(sink: LlamaLogSink): () => void {
  sinks.add(sink);
  return () => sinks.delete(sink);
}

async function startRuntime(options: LlamaRuntimeOptions, build: LlamaBuildChoice, nativeOptions: Readonly<Record<string, string>>): Promise<Llama> {
  const common = {
    build: "never",
    skipDownload: true,
    // node-llama-cpp defaults to max(cores, 4) threads: on 2 cores that was measured 15× slower.
    maxThreads: options.threads,
    logLevel: LlamaLogLevel.warn,
    logger: (level, message) => {
      for (const sink of sinks) sink(level, message);
    },
  } satisfies LlamaOptions;

  let fallback: string | undefined;
  if (build === "native") {
    const native = await startNative(common, nativeOptions);
    if ("llama" in native) return remember(native.llama, describeBinary(native.llama), options.logger);
    fallback = native.reason;
    options.logger?.warn({ reason: fallback }, "native llama.cpp build not used; running the prebuilt binary");
  }
  const llama = await getLlama({ ...common, gpu: options.gpu ? "auto" : false });
  const binary = describeBinary(llama);
  // /status shows the description: say there that the native build was asked for and is not running.
  return remember(llama, fallback ? { ...binary, description: `${binary.description}; native build not usable`, fallback } : binary, options.logger);
}

async function startNative(common: LlamaOptions, cmakeOptions: Readonly<Record<string, string>>): Promise<{ llama: Llama } | { reason: string }> {
  const found = findLocalBuild(cmakeOptions);
  if (!found) return { reason: "there is no native build; make one with `npm run build:llama`" };
  const mismatch = cpuMismatch(found.marker);
  if (mismatch) return { reason: `the native build in ${found.dir} is not for this machine: ${mismatch}; rebuild it here with \`npm run build:llama\`` };
  // Before llama.cpp (and libgomp with it) is loaded: libgomp reads its environment once.
  applyOpenMpWaitEnv();
  try {
    // usePrebuiltBinaries: false makes node-llama-cpp fail rather than quietly load the prebuilt.
    const llama = await getLlama({ ...common, gpu: false, cmakeOptions: { ...cmakeOptions }, usePrebuiltBinaries: false, progressLogs: false });
    if (llama.buildType !== "localBuild") throw new Error(`node-llama-cpp loaded a ${llama.buildType} binary instead`);
    return { llama };
  } catch (err) {
    return { reason: `the native build in ${found.dir} failed to load (${(err as Error).message}); rebuild it with \`npm run build:llama\`` };
  }
}

function describeBinary(llama: Llama): LlamaBinary {
  const gpu = llama.gpu === false ? "cpu" : llama.gpu;
  if (llama.buildType === "prebuilt") return { kind: "prebuilt", description: `prebuilt (${gpu})` };
  const options = Object.entries(llama.cmakeOptions).map(([k, v]) => `${k}=${v}`).join(" ");
  return { kind: "native", description: `native build (${gpu}${options ? `, ${options}` : ""})` };
}

function remember(llama: Llama, binary: LlamaBinary, logger: Logger | undefined): Llama {
  binaries.set(llama, binary);
  logger?.info({ binary: binary.description, llamaCpp: llama.llamaCppRelease.release }, "llama.cpp binary");
  return llama;
}
