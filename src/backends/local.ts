/**
 * The local backend: a Llama GGUF base model run by llama.cpp (through node-llama-cpp), with the
 * Friends LoRA adapter applied at runtime.
 *
 * - The adapter was trained on plain script text (`Joey: …\nChandler: …`), so this is text
 *   completion of `renderScript`'s prompt, never a chat template.
 * - Two parts: `LocalModelLoader` gets the model ready (download, check, runtime, deadline, the
 *   reasons for failures) and `LocalGenerator` generates on it (sequences per channel, batched
 *   decodes, saved channel states). This class validates the options and ties the two together.
 * - Disposed by `close()`: a closed LocalBackend never loads again; make a new one.
 */
import { availableParallelism } from "node:os";
import { pino, type Logger } from "pino";
import { LOCAL_BOUNDS, LOCAL_DEFAULTS, type KvCacheType, type LlamaBuildChoice } from "../config/local-defaults.ts";
import { BackendError, type Backend, type BackendInfo, type GenerateRequest } from "../core/backend.ts";
import { modelSourceName, parseModelSource, type ModelSource } from "../core/model-source.ts";
import { LocalGenerator, type LocalGenerationStats } from "./local/generator.ts";
import { LocalModelLoader, type LoadedModel } from "./local/model-loader.ts";
import { dropSavedStates, StateCache } from "./local/state-cache.ts";
import { untilAborted } from "../core/abort.ts";
import type { ReplyScore } from "./local/reply-score.ts";

export type { LocalGenerationStats, LocalStopReason } from "./local/generator.ts";

export interface LocalBackendOptions {
  /**
   * Base model (LLAMA_MODEL_PATH): a GGUF file path, a Hugging Face URI (`hf:user/repo:Q4_K_M`,
   * `hf:user/repo/file.gguf`) or an http(s) URL. A URI's file is downloaded into `modelsDir` once.
   */
  modelPath: string;
  /** LoRA adapter (LLAMA_LORA_PATH), in the same forms, downloaded into `adaptersDir`. Undefined or empty: the base model only. */
  loraPath?: string;
  /** Adapter scale (LLAMA_LORA_SCALE); 0 is the base model. Default 1. */
  loraScale?: number;
  /** CPU threads (LLAMA_THREADS). Default: `os.availableParallelism()`, never node-llama-cpp's 4. */
  threads?: number;
  /** Layers offloaded to a GPU (LLAMA_GPU_LAYERS): "auto" fits what the GPU holds, 0 is CPU only. Default "auto". */
  gpuLayers?: "auto" | number;
  /** Tokens per channel sequence, prompt and reply together (LLAMA_CONTEXT_SIZE). Default 4096. */
  contextSize?: number;
  /** Channels served concurrently by the one context (LLAMA_SEQUENCES). Default 4. */
  sequences?: number;
  /**
   * Where channels' KV states are saved when their sequence is taken or Friend stops, and loaded
   * from when they return (LLAMA_STATE_DIR). Undefined: nothing is saved.
   */
  stateDir?: string;
  /** Disk for saved states, in MiB (LLAMA_STATE_CACHE_MB); the least recently used go first. 0 saves none. Default 2048. */
  stateCacheMb?: number;
  /**
   * Also save a channel's state after every this many answered turns (LLAMA_STATE_SAVE_TURNS), so a
   * SIGKILL loses at most that many turns of evaluation. 0 (default): only at eviction and at the graceful stop.
   */
  stateSaveTurns?: number;
  /** The KV cache's element type (LLAMA_KV_CACHE_TYPE): "f16" (default) or "q8_0", half the memory and state size. */
  kvCacheType?: KvCacheType;
  /** Longest llama.cpp may take to load the model and adapter and create the context (LLAMA_LOAD_TIMEOUT_S); downloads do not count. Default 300 s. */
  loadTimeoutMs?: number;
  /** Where downloaded models go and are looked for. Default "models". */
  modelsDir?: string;
  /** Where downloaded adapters go and are looked for. Default "adapters". */
  adaptersDir?: string;
  /** Replaces https://huggingface.co/ for hf: URIs: a mirror, or a loopback fake in tests. */
  huggingFaceEndpoint?: string;
  /** Token for gated Hugging Face repositories (HF_TOKEN). Never logged. */
  huggingFaceToken?: string;
  /** A download that receives no new bytes for this long fails (LLAMA_DOWNLOAD_STALL_S). Default 60 s. */
  downloadStallMs?: number;
  /** The longest a whole download may take (LLAMA_DOWNLOAD_TIMEOUT_S). Default 3 hours. */
  downloadTimeoutMs?: number;
  /** Where to draw a download progress bar. Default: stderr when it is a terminal; otherwise progress is logged every few percent. */
  progressBar?: NodeJS.WritableStream | false;
  /** Which llama.cpp binary (LLAMA_BUILD): "prebuilt" (default), or "native" for `npm run build:llama`'s, when it loads. */
  build?: LlamaBuildChoice;
  /** Where load progress, llama.cpp warnings and per-generation counters go. Default: silent. */
  logger?: Logger;
}

export class LocalBackend implements Backend {
  readonly name = "local" as const;

  readonly #modelSource: ModelSource;
  readonly #loraSource: ModelSource | undefined;
  readonly #loader: LocalModelLoader;
  readonly #stateDir: string | undefined;
  readonly #stateBudgetBytes: number;
  readonly #stateSaveTurns: number;
  readonly #log: Logger;
  /** The generator for the loaded model, made once per load. */
  #generator: Promise<LocalGenerator> | undefined;
  #generatorReady: LocalGenerator | undefined;

  constructor(options: LocalBackendOptions) {
    const modelSource = parseModelSource(options.modelPath);
    const loraSource = options.loraPath ? parseModelSource(options.loraPath) : undefined;
    const loraScale = options.loraScale ?? LOCAL_DEFAULTS.loraScale;
    const threads = options.threads ?? availableParallelism();
    const gpuLayers = options.gpuLayers ?? LOCAL_DEFAULTS.gpuLayers;
    const contextSize = options.contextSize ?? LOCAL_DEFAULTS.contextSize;
    const sequences = options.sequences ?? LOCAL_DEFAULTS.sequences;
    const loadTimeoutMs = options.loadTimeoutMs ?? LOCAL_DEFAULTS.loadTimeoutS * 1000;
    const stateCacheMb = options.stateCacheMb ?? LOCAL_DEFAULTS.stateCacheMb;
    const kvCacheType = options.kvCacheType ?? LOCAL_DEFAULTS.kvCacheType;
    const stateSaveTurns = options.stateSaveTurns ?? LOCAL_DEFAULTS.stateSaveTurns;
    if (!(loraScale >= LOCAL_BOUNDS.loraScale.min && loraScale <= LOCAL_BOUNDS.loraScale.max)) {
      throw new RangeError(`loraScale must be a number from ${LOCAL_BOUNDS.loraScale.min} to ${LOCAL_BOUNDS.loraScale.max}, got ${loraScale}`);
    }
    checkInteger("threads", threads, LOCAL_BOUNDS.threads);
    if (gpuLayers !== "auto") checkInteger("gpuLayers", gpuLayers, LOCAL_BOUNDS.gpuLayers, '"auto" or ');
    checkInteger("contextSize", contextSize, LOCAL_BOUNDS.contextSize);
    checkInteger("sequences", sequences, LOCAL_BOUNDS.sequences);
    checkInteger("stateCacheMb", stateCacheMb, LOCAL_BOUNDS.stateCacheMb);
    checkInteger("stateSaveTurns", stateSaveTurns, LOCAL_BOUNDS.stateSaveTurns);
    if (!(loadTimeoutMs > 0)) throw new RangeError(`loadTimeoutMs must be positive, got ${loadTimeoutMs}`);
    if (kvCacheType !== "f16" && kvCacheType !== "q8_0") throw new RangeError(`kvCacheType must be "f16" or "q8_0", got ${String(kvCacheType)}`);

    this.#modelSource = modelSource;
    this.#loraSource = loraSource;
    this.#stateDir = stateCacheMb > 0 ? options.stateDir : undefined;
    this.#stateBudgetBytes = stateCacheMb * 1024 * 1024;
    this.#stateSaveTurns = stateSaveTurns;
    this.#log = (options.logger ?? pino({ enabled: false })).child({ backend: "local" });
    this.#loader = new LocalModelLoader({
      modelSource,
      loraSource,
      loraScale,
      threads,
      gpuLayers,
      contextSize,
      sequences,
      kvCacheType,
      loadTimeoutMs,
      modelsDir: options.modelsDir ?? LOCAL_DEFAULTS.modelsDir,
      adaptersDir: options.adaptersDir ?? LOCAL_DEFAULTS.adaptersDir,
      huggingFaceEndpoint: options.huggingFaceEndpoint,
      huggingFaceToken: options.huggingFaceToken,
      downloadStallMs: options.downloadStallMs ?? LOCAL_DEFAULTS.downloadStallS * 1000,
      downloadTimeoutMs: options.downloadTimeoutMs ?? LOCAL_DEFAULTS.downloadTimeoutS * 1000,
      progressBar: options.progressBar === false ? undefined : (options.progressBar ?? (process.stderr.isTTY ? process.stderr : undefined)),
      build: options.build ?? LOCAL_DEFAULTS.build,
      log: this.#log,
    });
  }

  describe(): BackendInfo {
    const progress = this.#loader.progress;
    const binary = this.#loader.binary;
    const savedStates = this.#generatorReady?.stateStats();
    return {
      backend: "local",
      model: modelSourceName(this.#modelSource),
      ...(this.#loraSource ? { adapter: modelSourceName(this.#loraSource) } : {}),
      loaded: this.#loader.loaded !== undefined,
      ...(progress ? { progress } : {}),
      ...(binary ? { binary } : {}),
      ...(savedStates ? { savedStates } : {}),
    };
  }

  /**
   * Downloads what is not on disk yet, then loads the model, the adapter and the context, once.
   * Concurrent callers share the load. A failed or timed-out load throws BackendError("load")
   * naming the file or URI and the reason, and the next call tries again (after the file is fixed,
   * say, or the network is back). After close() it throws BackendError("aborted").
   */
  async prepare(): Promise<void> {
    await this.#ready();
  }

  generate(request: GenerateRequest): AsyncGenerator<string, LocalGenerationStats, undefined> {
    return this.#generate(request);
  }

  /**
   * Forgets the channel's KV state, in memory and on disk (/reset; also the hook for anything that
   * changes the start of a channel's window, such as a forgotten or deleted message).
   */
  resetChannel(channelId: string): Promise<void> {
    const done = this.#generatorReady ? this.#generatorReady.forget(channelId) : this.#stateDir ? dropSavedStates(this.#stateDir, channelId) : Promise.resolve();
    // Callers need not wait (the memory is forgotten at once); the promise settles once the disk is too.
    return done.catch((err: unknown) => this.#log.warn({ channelId, err }, "could not delete a channel's saved state"));
  }

  /**
   * Saves every channel's KV state that is not saved yet, the most recently answered first, until
   * `deadlineAt` (ms since the epoch); a channel still generating is saved once its reply is done.
   * For the graceful stop: call it when the grace period begins, alongside the replies finishing.
   */
  async saveState(deadlineAt: number): Promise<void> {
    const generator = this.#generatorReady;
    if (!generator) return;
    const written = await generator.saveAll(deadlineAt);
    this.#log.info({ written, ...generator.stateStats() }, "channel states saved");
  }

  /** `friend eval`'s held-out perplexity: how likely the model finds `reply` after the prompt `generate` would build (see local/reply-score.ts). */
  async scoreReply(request: GenerateRequest, reply: string): Promise<ReplyScore> {
    const generator = await this.#ready();
    return generator.score(request, reply);
  }

  /** Ends downloads, loads and generations in flight and frees the model and context, for good. */
  async close(): Promise<void> {
    this.#loader.abort();
    // Freed only once llama.cpp is done with every sequence: a context or model freed under a
    // decode, a state save or a scoring still running is a native use-after-free.
    await this.#generatorReady?.drain();
    await this.#loader.close();
    this.#generatorReady = undefined;
  }

  #ready(): Promise<LocalGenerator> {
    return this.#loader.load().then((loaded) => {
      this.#generator ??= this.#makeGenerator(loaded);
      return this.#generator;
    });
  }

  async #makeGenerator(loaded: LoadedModel): Promise<LocalGenerator> {
    let cache: StateCache | undefined;
    if (this.#stateDir) {
      try {
        cache = await StateCache.open({ dir: this.#stateDir, budgetBytes: this.#stateBudgetBytes, key: loaded.stateKey, log: this.#log });
      } catch (err) {
        // Friend works without it: channels evaluate their windows as before.
        this.#log.warn({ dir: this.#stateDir, err }, "cannot use the folder for saved channel states; none are saved");
      }
    }
    const generator = new LocalGenerator(loaded, { cache, saveEveryTurns: this.#stateSaveTurns, log: this.#log, closing: this.#loader.closing });
    this.#generatorReady = generator;
    return generator;
  }

  async *#generate(request: GenerateRequest): AsyncGenerator<string, LocalGenerationStats, undefined> {
    const signal = AbortSignal.any([request.signal, this.#loader.closing]);
    if (signal.aborted) throw this.#abortedError(request);
    let generator: LocalGenerator;
    try {
      // The first reply waits for the load (a load error is this reply's error), unless aborted meanwhile.
      generator = await untilAborted(this.#ready(), signal);
    } catch (err) {
      if (signal.aborted) throw this.#abortedError(request);
      throw err;
    }
    return yield* generator.generate(request, signal);
  }

  #abortedError(request: GenerateRequest): BackendError {
    const why = this.#loader.closing.aborted && !request.signal.aborted ? "the local backend is closing" : "the request was aborted";
    return new BackendError("aborted", `Local generation in channel ${request.channelId} stopped after 0 tokens: ${why}.`);
  }
}

function checkInteger(name: string, value: number, bounds: { min: number; max: number }, alternative = ""): void {
  if (!Number.isInteger(value) || value < bounds.min || value > bounds.max) {
    throw new RangeError(`${name} must be ${alternative}an integer from ${bounds.min} to ${bounds.max}, got ${value}`);
  }
}
