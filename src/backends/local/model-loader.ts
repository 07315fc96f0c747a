/**
 * Gets the local model ready: downloads what is not on disk yet, checks the files, starts the
 * llama.cpp runtime, and loads the model, the adapter and one context with N sequences, within the
 * load deadline, with llama.cpp's own reason when something fails.
 *
 * Disposed by `close()`, as node-llama-cpp's own objects are: a closed loader never loads again.
 */
import {
  InsufficientMemoryError,
  LlamaLogLevel,
  LlamaLogLevelGreaterThanOrEqual,
  LlamaVocabularyType,
  type Llama,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";
import type { Logger } from "pino";
import type { KvCacheType, LlamaBuildChoice } from "../../config/local-defaults.ts";
import { BackendError, type BackendInfo } from "../../core/backend.ts";
import { describeModelSource, modelSourceName, type ModelSource } from "../../core/model-source.ts";
import { withDeadline } from "./deadline.ts";
import { DownloadReport, fetchModelFile } from "./model-download.ts";
import { checkGgufFile, describeLoadError, llamaFailureReason, type ModelFileRole } from "./model-files.ts";
import { fileIdentity } from "./model-identity.ts";
import { peftAdapterFile } from "./peft-adapter.ts";
import { llamaBinary, llamaRuntime, onLlamaLog } from "./runtime.ts";
import { sampleFirstAloneAfterDecode } from "./sampling-order.ts";
import type { StateKey } from "./state-cache.ts";

export interface ModelLoaderOptions {
  modelSource: ModelSource;
  loraSource: ModelSource | undefined;
  loraScale: number;
  threads: number;
  gpuLayers: "auto" | number;
  contextSize: number;
  sequences: number;
  kvCacheType: KvCacheType;
  loadTimeoutMs: number;
  modelsDir: string;
  adaptersDir: string;
  huggingFaceEndpoint?: string;
  huggingFaceToken?: string;
  downloadStallMs: number;
  /** The longest a whole download may take (LLAMA_DOWNLOAD_TIMEOUT_S). */
  downloadTimeoutMs: number;
  progressBar: NodeJS.WritableStream | undefined;
  build: LlamaBuildChoice;
  log: Logger;
}

/** A loaded model, adapter and context. */
export interface LoadedModel {
  /** The files in use, after any download. */
  modelFile: string;
  adapterFile: string | undefined;
  model: LlamaModel;
  context: LlamaContext;
  sequences: LlamaContextSequence[];
  /** The token node-llama-cpp puts before a completion prompt (BOS for Llama), or null. */
  firstToken: Token | null;
  /** What a KV state saved from this context is valid for. */
  stateKey: StateKey;
}

/** node-llama-cpp's names for the KV cache types Friend offers. */
const KV_GGML_TYPE = { f16: "F16", q8_0: "Q8_0" } as const;

export class LocalModelLoader {
  readonly #o: ModelLoaderOptions;
  #loading: Promise<LoadedModel> | undefined;
  #loaded: LoadedModel | undefined;
  /** What the load in progress is doing, for describe(). */
  #progress: BackendInfo["progress"];
  #unsubscribeLog: (() => void) | undefined;
  /** llama.cpp's error lines while a load step runs (and only then), for the real failure reason. */
  #stepErrors: string[] | undefined;
  /** Aborted by close(): ends any download or load in flight. Never re-armed. */
  readonly #closing = new AbortController();

  constructor(options: ModelLoaderOptions) {
    this.#o = options;
  }

  get loaded(): LoadedModel | undefined {
    return this.#loaded;
  }

  get progress(): BackendInfo["progress"] {
    return this.#progress ? { ...this.#progress } : undefined;
  }

  /** Aborts when the loader is closed. */
  get closing(): AbortSignal {
    return this.#closing.signal;
  }

  /** The binary line for /status, once loaded. */
  get binary(): string | undefined {
    return this.#loaded ? llamaBinary(this.#loaded.model.llama).description : undefined;
  }

  /**
   * Loads once; concurrent callers share the load. A failed or timed-out load throws
   * BackendError("load") naming the file and the reason, and the next call tries again. After
   * close(), every call throws BackendError("aborted").
   */
  load(): Promise<LoadedModel> {
    if (this.#closing.signal.aborted) return Promise.reject(this.#closing.signal.reason);
    this.#loading ??= this.#loadOnce(this.#closing.signal).then(
      (loaded) => {
        this.#progress = undefined;
        return (this.#loaded = loaded);
      },
      (err: unknown) => {
        // The next caller starts afresh: nothing waits on a failed or stuck load.
        this.#loading = undefined;
        this.#progress = undefined;
        this.#unsubscribeLog?.();
        this.#unsubscribeLog = undefined;
        if (err instanceof BackendError && err.kind === "aborted") this.#o.log.info({ reason: err.message }, "local model load stopped");
        else this.#o.log.error({ err }, "local model failed to load");
        throw err;
      },
    );
    return this.#loading;
  }

  /** Aborts the closing signal: downloads, loads and everything watching the signal end. Frees nothing. */
  abort(): void {
    if (!this.#closing.signal.aborted) this.#closing.abort(new BackendError("aborted", "The local backend is closing."));
  }

  /**
   * Ends any download or load in flight and frees the model and context, for good. The caller
   * must have waited for llama.cpp to be done with every sequence (abort(), then drain).
   */
  async close(): Promise<void> {
    this.abort();
    const loaded = await this.#loading?.catch(() => undefined);
    this.#loaded = undefined;
    if (loaded) await this.#free(loaded);
    this.#unsubscribeLog?.();
    this.#unsubscribeLog = undefined;
  }

  async #loadOnce(closing: AbortSignal): Promise<LoadedModel> {
    const o = this.#o;
    const started = Date.now();
    this.#progress = { step: "loading", text: `loading ${modelSourceName(o.modelSource)}` };
    const model = await this.#localFile(o.modelSource, "model", closing);
    const adapter = o.loraSource ? await this.#adapterFile(o.loraSource, model.file, closing) : undefined;
    this.#unsubscribeLog ??= onLlamaLog((level, message) => this.#onLlamaLog(level, message));
    o.log.info({ model: model.file, adapter: adapter?.file, threads: o.threads, gpuLayers: o.gpuLayers }, "loading local model");

    let llama;
    try {
      llama = await llamaRuntime({ gpu: o.gpuLayers !== 0, threads: o.threads, build: o.build, logger: o.log });
    } catch (err) {
      throw new BackendError("load", `Cannot start llama.cpp from node-llama-cpp's prebuilt binary: ${(err as Error).message}`, { cause: err });
    }
    const stateKey: StateKey = {
      model: await model.identity,
      adapter: adapter ? { file: await adapter.identity, scale: o.loraScale } : null,
      contextSize: o.contextSize,
      kvCacheType: o.kvCacheType,
      binary: `${llamaBinary(llama).description}; ${llama.llamaCppRelease.repo}@${llama.llamaCppRelease.release}`,
    };

    const loaded = await withDeadline((signal) => this.#loadIntoLlama(llama, model.file, adapter?.file, stateKey, signal), {
      ms: o.loadTimeoutMs,
      signal: closing,
      timeoutError: () =>
        new BackendError(
          "load",
          `Loading the local model ${model.file}${adapter ? ` with the adapter ${adapter.file}` : ""} took longer than ${o.loadTimeoutMs / 1000} s, so it was stopped; a slow disk or a large model may need a larger LLAMA_LOAD_TIMEOUT_S.`,
        ),
      // llama.cpp notices the abort only between steps; whatever it finished after giving up is freed.
      onLate: async (late) => {
        await this.#free(late);
        o.log.warn({ model: model.file }, "a local model load finished after its timeout; freed it");
      },
    });
    o.log.info(
      {
        ms: Date.now() - started,
        gpu: llama.gpu,
        gpuLayers: loaded.model.gpuLayers,
        modelBytes: loaded.model.size,
        contextSize: loaded.context.contextSize,
        sequences: o.sequences,
        kvCacheType: o.kvCacheType,
        adapterScale: adapter ? o.loraScale : undefined,
      },
      "local model loaded",
    );
    return loaded;
  }

  /**
   * The checked local file for a source, downloaded first when it is a URI whose file is not on
   * disk yet, and its identity for keying saved states. A file that came from a URI and is damaged
   * says so, with the way to fetch it again.
   */
  async #localFile(source: ModelSource, role: ModelFileRole, closing: AbortSignal): Promise<{ file: string; identity: Promise<string> }> {
    const o = this.#o;
    const report = new DownloadReport(source, o.log, o.progressBar);
    let downloading = false;
    let file: string;
    try {
      file = await fetchModelFile(source, {
        role,
        directory: role === "model" ? o.modelsDir : o.adaptersDir,
        huggingFaceEndpoint: o.huggingFaceEndpoint,
        huggingFaceToken: o.huggingFaceToken,
        stallMs: o.downloadStallMs,
        deadlineMs: o.downloadTimeoutMs,
        signal: closing,
        onProgress: (progress) => {
          downloading = true;
          report.update(progress);
          this.#progress = { step: "downloading", text: report.text };
        },
      });
    } catch (err) {
      report.fail();
      throw err;
    }
    if (downloading) report.finish(file);
    this.#progress = { step: "loading", text: `loading ${modelSourceName(source)}` };
    return checkedFile(file, role, source.kind === "file" ? {} : { downloadedFrom: describeModelSource(source) });
  }

  /** The adapter's GGUF: a PEFT folder or repository imported once against the model (see peft-adapter.ts), else the file itself. */
  async #adapterFile(source: ModelSource, modelFile: string, closing: AbortSignal): Promise<{ file: string; identity: Promise<string> }> {
    const o = this.#o;
    const imported = await peftAdapterFile(source, modelFile, {
      adaptersDir: o.adaptersDir,
      huggingFaceEndpoint: o.huggingFaceEndpoint,
      huggingFaceToken: o.huggingFaceToken,
      stallMs: o.downloadStallMs,
      deadlineMs: o.downloadTimeoutMs,
      log: o.log,
      signal: closing,
      onProgress: (step, text) => (this.#progress = { step, text }),
    });
    return imported ? checkedFile(imported, "LoRA adapter", {}) : this.#localFile(source, "LoRA adapter", closing);
  }

  /** Loads the model, applies the adapter and creates the context; stops early when `signal` aborts. */
  async #loadIntoLlama(llama: Llama, modelFile: string, adapterFile: string | undefined, stateKey: StateKey, signal: AbortSignal): Promise<LoadedModel> {
    const o = this.#o;
    const model = await this.#step(
      () => {
        let reported = 0;
        return llama.loadModel({
          modelPath: modelFile,
          gpuLayers: o.gpuLayers,
          loadSignal: signal,
          onLoadProgress: (progress) => {
            // Quarter steps: a 4 GB model on a slow disk takes long enough to want a sign of life.
            if (progress >= reported + 0.25 || progress === 1) {
              reported = progress;
              o.log.info({ progress: Math.round(progress * 100) }, "loading local model");
            }
          },
        });
      },
      (reason) => `Cannot load the local model ${modelFile}: ${reason}`,
      signal,
    );

    let context: LlamaContext;
    try {
      const kvType = KV_GGML_TYPE[o.kvCacheType];
      context = await this.#step(
        () =>
          model.createContext({
            contextSize: o.contextSize,
            sequences: o.sequences,
            threads: o.threads,
            createSignal: signal,
            ...(adapterFile ? { lora: { adapters: [{ filePath: adapterFile, scale: o.loraScale }] } } : {}),
            // llama.cpp needs flash attention for a quantised V cache.
            ...(o.kvCacheType === "f16" ? {} : { experimentalKvCacheKeyType: kvType, experimentalKvCacheValueType: kvType, flashAttention: true }),
          }),
        (reason, err) => {
          if (adapterFile && /lora/i.test((err as Error).message)) {
            return `Cannot apply the LoRA adapter ${adapterFile} to the model ${modelFile}: ${reason}`;
          }
          if (err instanceof InsufficientMemoryError) {
            return `Not enough memory for ${o.sequences} sequences × ${o.contextSize} tokens of context with ${modelFile}; lower LLAMA_CONTEXT_SIZE or LLAMA_SEQUENCES (${reason})`;
          }
          return `Cannot create a llama.cpp context for ${modelFile}: ${reason}`;
        },
        signal,
      );
    } catch (err) {
      await model.dispose();
      throw err;
    }

    try {
      // Sequences sharing a decode must not sample at once before llama.cpp has reordered its outputs.
      sampleFirstAloneAfterDecode(context);
    } catch (err) {
      await context.dispose();
      await model.dispose();
      throw new BackendError("load", `Cannot use the llama.cpp context for ${modelFile}: ${(err as Error).message}`, { cause: err });
    }
    const sequences = Array.from({ length: o.sequences }, () => context.getSequence());
    return { modelFile, adapterFile, model, context, sequences, firstToken: firstPromptToken(model), stateKey };
  }

  async #free(loaded: LoadedModel): Promise<void> {
    await loaded.context.dispose();
    await loaded.model.dispose();
    this.#o.log.info({ model: loaded.modelFile }, "local model unloaded");
  }

  /**
   * Runs one load step, turning its failure into a BackendError that carries llama.cpp's own
   * reason when it logged one (node-llama-cpp's messages are generic), and a raw JavaScript error
   * from node-llama-cpp into words about the file. An abort passes through as it is.
   */
  async #step<T>(run: () => Promise<T>, describe: (reason: string, err: unknown) => string, signal: AbortSignal): Promise<T> {
    const errors: string[] = [];
    this.#stepErrors = errors;
    try {
      return await run();
    } catch (err) {
      if (err instanceof BackendError || signal.aborted) throw err;
      // llama.cpp's log lines arrive through the event loop; let any still queued land first.
      await new Promise((resolve) => setImmediate(resolve));
      const reason = llamaFailureReason(errors) ?? describeLoadError(err);
      throw new BackendError("load", describe(reason, err), { cause: err });
    } finally {
      // Kept only while a step runs: errors logged later (during generation) are logged, not hoarded.
      if (this.#stepErrors === errors) this.#stepErrors = undefined;
    }
  }

  #onLlamaLog(level: LlamaLogLevel, message: string): void {
    if (LlamaLogLevelGreaterThanOrEqual(level, LlamaLogLevel.error)) {
      this.#stepErrors?.push(message);
      this.#o.log.error({ llama: message.trim() }, "llama.cpp error");
    } else {
      this.#o.log.warn({ llama: message.trim() }, "llama.cpp warning");
    }
  }

  /** How many llama.cpp error lines are held for a load step's failure reason (none outside a step). */
  get heldErrorLines(): number {
    return this.#stepErrors?.length ?? 0;
  }
}

/** The token LlamaCompletion puts before the prompt; mirrors its rule so the cached prefix matches. */
function firstPromptToken(model: LlamaModel): Token | null {
  switch (model.vocabularyType) {
    case LlamaVocabularyType.rwkv:
    case LlamaVocabularyType.ugm:
      return null;
    case LlamaVocabularyType.wpm:
      return model.tokens.bos;
    default:
      return model.tokens.shouldPrependBosToken ? model.tokens.bos : null;
  }
}

/** A file checked as a GGUF of its role, with its identity for keying saved states (computed meanwhile; awaited once the runtime is up). */
async function checkedFile(file: string, role: ModelFileRole, origin: Parameters<typeof checkGgufFile>[2]): Promise<{ file: string; identity: Promise<string> }> {
  const summary = await checkGgufFile(file, role, origin);
  const identity = fileIdentity(file, summary.metadataBytes);
  identity.catch(() => undefined);
  return { file, identity };
}
