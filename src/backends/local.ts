/**
 * The local backend: a Llama GGUF base model run by llama.cpp (through node-llama-cpp), with the
 * Friends LoRA adapter applied at runtime.
 *
 * - The adapter was trained on plain script text (`Joey: …\nChandler: …`), so this is text
 *   completion of `renderScript`'s prompt, never a chat template.
 * - One context with N sequences; each channel borrows a sequence and keeps it between turns, so a
 *   new turn evaluates only the tokens after the cached prefix (see `ChannelSlots`, `fitPrompt`).
 * - Several channels generating at once share every decode: `LockstepDecoder` asks each of them
 *   for its next token together, so one batch carries all of them.
 * - It streams raw model text, cut only at the request's stop sequences; the caller cleans it and
 *   ends a generation early by aborting its signal or calling `return()` on the generator.
 */
import { availableParallelism } from "node:os";
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
import { pino, type Logger } from "pino";
import { renderScript } from "./prompt.ts";
import { LOCAL_DEFAULTS, type LlamaBuildChoice } from "../config/local-defaults.ts";
import { BackendError, type Backend, type BackendInfo, type GenerateRequest, type GenerationStats } from "../core/backend.ts";
import { describeModelSource, modelSourceName, parseModelSource, type ModelSource } from "../core/model-source.ts";
import { reuseCachedTokens, type TokenCodec } from "./local/cached-tokens.ts";
import { ChannelSlots, type Lease } from "./local/channel-slots.ts";
import { ChunkQueue } from "./local/chunk-queue.ts";
import { withDeadline } from "./local/deadline.ts";
import { LockstepDecoder, type DecodeJobEnd } from "./local/lockstep.ts";
import { DownloadReport, fetchModelFile } from "./local/model-download.ts";
import { peftAdapterFile } from "./local/peft-adapter.ts";
import { checkGgufFile, describeLoadError, llamaFailureReason, type ModelFileRole } from "./local/model-files.ts";
import { promptBudget, scoreReply, type ReplyScore } from "./local/reply-score.ts";
import { llamaBinary, llamaRuntime, onLlamaLog } from "./local/runtime.ts";
import { StopScanner } from "./local/stop-scanner.ts";
import { TokenText } from "./local/token-text.ts";
import { fitPrompt } from "./prompt-fit.ts";

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

/** Why a local generation ended: the end-of-text token, a stop sequence, or the token limit. */
export type LocalStopReason = "eos" | "stop" | "maxTokens";

export interface LocalGenerationStats extends GenerationStats {
  promptTokens: number;
  /** Tokens the model sampled, including any that formed a stop trigger. */
  completionTokens: number;
  /** Prompt tokens llama.cpp evaluated; the rest came from the sequence's KV cache. */
  evaluatedPromptTokens: number;
  stopReason: LocalStopReason;
  /** Oldest window turns left out of the prompt to fit the context. */
  droppedTurns: number;
  /** From the request to the first sampled token (prompt evaluation included), in ms. */
  firstTokenMs: number;
}

/** After a trim, the prompt uses at most this fraction of its budget, so many turns fit before the next one. */
const TRIM_TO_FRACTION = 0.5;
/** Prompt tokens evaluated between abort checks; llama.cpp cannot be interrupted inside one decode. */
const PREFILL_CHUNK = 256;
/** Sampling as node-llama-cpp's LlamaCompletion does it: top-k 40, and a 1.1 repeat penalty over the reply's last 64 tokens (newlines exempt). */
const TOP_K = 40;
const REPEAT_PENALTY_TOKENS = 64;

interface Loaded {
  /** The files in use, after any download. */
  modelFile: string;
  adapterFile: string | undefined;
  model: LlamaModel;
  context: LlamaContext;
  slots: ChannelSlots<LlamaContextSequence>;
  /** The token node-llama-cpp puts before a completion prompt (BOS for Llama), or null. */
  firstToken: Token | null;
}

export class LocalBackend implements Backend {
  readonly name = "local" as const;

  private readonly modelSource: ModelSource;
  private readonly loraSource: ModelSource | undefined;
  private readonly loraScale: number;
  private readonly threads: number;
  private readonly gpuLayers: "auto" | number;
  private readonly contextSize: number;
  private readonly sequences: number;
  private readonly loadTimeoutMs: number;
  private readonly files: Pick<LocalBackendOptions, "modelsDir" | "adaptersDir" | "huggingFaceEndpoint" | "huggingFaceToken" | "downloadStallMs" | "downloadTimeoutMs">;
  private readonly progressBar: NodeJS.WritableStream | undefined;
  private readonly build: LlamaBuildChoice;
  private readonly log: Logger;
  private readonly decoder = new LockstepDecoder();

  private loading: Promise<Loaded> | undefined;
  private loaded: Loaded | undefined;
  /** What the load in progress is doing, for describe(). */
  private progress: BackendInfo["progress"];
  private unsubscribeLog: (() => void) | undefined;
  /** llama.cpp error lines since the current load step began, for the real failure reason. */
  private readonly llamaErrors: string[] = [];
  /** Aborted by close(): ends every download, load and generation in flight. */
  private closing = new AbortController();
  /** Settle when a generation stops touching its sequence; close() waits for them before disposing. */
  private readonly inFlight = new Set<Promise<void>>();

  constructor(options: LocalBackendOptions) {
    this.modelSource = parseModelSource(options.modelPath);
    this.loraSource = options.loraPath ? parseModelSource(options.loraPath) : undefined;
    this.loraScale = options.loraScale ?? LOCAL_DEFAULTS.loraScale;
    this.threads = options.threads ?? availableParallelism();
    this.gpuLayers = options.gpuLayers ?? LOCAL_DEFAULTS.gpuLayers;
    this.contextSize = options.contextSize ?? LOCAL_DEFAULTS.contextSize;
    this.sequences = options.sequences ?? LOCAL_DEFAULTS.sequences;
    this.loadTimeoutMs = options.loadTimeoutMs ?? LOCAL_DEFAULTS.loadTimeoutS * 1000;
    this.files = {
      modelsDir: options.modelsDir ?? LOCAL_DEFAULTS.modelsDir,
      adaptersDir: options.adaptersDir ?? LOCAL_DEFAULTS.adaptersDir,
      huggingFaceEndpoint: options.huggingFaceEndpoint,
      huggingFaceToken: options.huggingFaceToken,
      downloadStallMs: options.downloadStallMs ?? LOCAL_DEFAULTS.downloadStallS * 1000,
      downloadTimeoutMs: options.downloadTimeoutMs ?? LOCAL_DEFAULTS.downloadTimeoutS * 1000,
    };
    this.progressBar = options.progressBar === false ? undefined : (options.progressBar ?? (process.stderr.isTTY ? process.stderr : undefined));
    this.build = options.build ?? LOCAL_DEFAULTS.build;
    this.log = (options.logger ?? pino({ enabled: false })).child({ backend: "local" });
    if (!Number.isFinite(this.loraScale)) throw new RangeError(`loraScale must be a number, got ${this.loraScale}`);
    if (!Number.isInteger(this.threads) || this.threads < 1) throw new RangeError(`threads must be a positive integer, got ${this.threads}`);
    if (this.gpuLayers !== "auto" && (!Number.isInteger(this.gpuLayers) || this.gpuLayers < 0)) {
      throw new RangeError(`gpuLayers must be "auto" or a non-negative integer, got ${this.gpuLayers}`);
    }
    if (!Number.isInteger(this.contextSize) || this.contextSize < 64) throw new RangeError(`contextSize must be an integer ≥ 64, got ${this.contextSize}`);
    if (!Number.isInteger(this.sequences) || this.sequences < 1) throw new RangeError(`sequences must be a positive integer, got ${this.sequences}`);
    if (!(this.loadTimeoutMs > 0)) throw new RangeError(`loadTimeoutMs must be positive, got ${this.loadTimeoutMs}`);
  }

  describe(): BackendInfo {
    return {
      backend: "local",
      model: modelSourceName(this.modelSource),
      ...(this.loraSource ? { adapter: modelSourceName(this.loraSource) } : {}),
      loaded: this.loaded !== undefined,
      ...(this.progress ? { progress: { ...this.progress } } : {}),
      ...(this.loaded ? { binary: llamaBinary(this.loaded.model.llama).description } : {}),
    };
  }

  /**
   * Downloads what is not on disk yet, then loads the model, the adapter and the context, once.
   * Concurrent callers share the load. A failed or timed-out load throws BackendError("load")
   * naming the file or URI and the reason, and the next call tries again (after the file is fixed,
   * say, or the network is back).
   */
  async prepare(): Promise<void> {
    await this.load();
  }

  generate(request: GenerateRequest): AsyncGenerator<string, LocalGenerationStats, undefined> {
    return this.generateInChannel(request);
  }

  resetChannel(channelId: string): void {
    this.loaded?.slots.forget(channelId);
  }

  /** `friend eval`'s held-out perplexity: how likely the model finds `reply` after the prompt `generate` would build (see local/reply-score.ts). */
  async scoreReply(request: GenerateRequest, reply: string): Promise<ReplyScore> {
    const loaded = await this.load();
    const lease = await loaded.slots.acquire(request.channelId, request.signal);
    try {
      if (lease.reassigned) await lease.slot.sequence.clearHistory();
      return await scoreReply(loaded.model, lease.slot.sequence, loaded.firstToken, request, reply, TRIM_TO_FRACTION);
    } finally {
      lease.release();
    }
  }

  /** Ends downloads, loads and generations in flight and frees the model and context. A later call loads again. */
  async close(): Promise<void> {
    this.closing.abort(new BackendError("aborted", "The local backend is closing."));
    await Promise.allSettled([...this.inFlight]);
    const loaded = await this.loading?.catch(() => undefined);
    this.loading = undefined;
    this.loaded = undefined;
    if (loaded) await this.free(loaded);
    this.unsubscribeLog?.();
    this.unsubscribeLog = undefined;
    this.closing = new AbortController();
  }

  // ── Loading ────────────────────────────────────────────────────────────────────────────────

  private load(): Promise<Loaded> {
    this.loading ??= this.loadOnce(this.closing.signal).then(
      (loaded) => {
        this.progress = undefined;
        return (this.loaded = loaded);
      },
      (err: unknown) => {
        // The next caller starts afresh: nothing waits on a failed or stuck load.
        this.loading = undefined;
        this.progress = undefined;
        this.unsubscribeLog?.();
        this.unsubscribeLog = undefined;
        if (err instanceof BackendError && err.kind === "aborted") this.log.info({ reason: err.message }, "local model load stopped");
        else this.log.error({ err }, "local model failed to load");
        throw err;
      },
    );
    return this.loading;
  }

  private async loadOnce(closing: AbortSignal): Promise<Loaded> {
    const started = Date.now();
    this.progress = { step: "loading", text: `loading ${modelSourceName(this.modelSource)}` };
    const modelFile = await this.localFile(this.modelSource, "model", closing);
    const adapterFile = !this.loraSource
      ? undefined
      : ((await peftAdapterFile(this.loraSource, modelFile, { ...this.files, adaptersDir: this.files.adaptersDir!, stallMs: this.files.downloadStallMs!, deadlineMs: this.files.downloadTimeoutMs!, log: this.log, signal: closing, onProgress: (step, text) => (this.progress = { step, text }) })) ??
        (await this.localFile(this.loraSource, "LoRA adapter", closing)));
    this.unsubscribeLog ??= onLlamaLog((level, message) => this.onLlamaLog(level, message));
    this.log.info({ model: modelFile, adapter: adapterFile, threads: this.threads, gpuLayers: this.gpuLayers }, "loading local model");

    let llama;
    try {
      llama = await llamaRuntime({ gpu: this.gpuLayers !== 0, threads: this.threads, build: this.build, logger: this.log });
    } catch (err) {
      throw new BackendError("load", `Cannot start llama.cpp from node-llama-cpp's prebuilt binary: ${(err as Error).message}`, { cause: err });
    }

    const loaded = await withDeadline((signal) => this.loadIntoLlama(llama, modelFile, adapterFile, signal), {
      ms: this.loadTimeoutMs,
      signal: closing,
      timeoutError: () =>
        new BackendError(
          "load",
          `Loading the local model ${modelFile}${adapterFile ? ` with the adapter ${adapterFile}` : ""} took longer than ${this.loadTimeoutMs / 1000} s, so it was stopped; a slow disk or a large model may need a larger LLAMA_LOAD_TIMEOUT_S.`,
        ),
      // llama.cpp notices the abort only between steps; whatever it finished after giving up is freed.
      onLate: async (late) => {
        await this.free(late);
        this.log.warn({ model: modelFile }, "a local model load finished after its timeout; freed it");
      },
    });
    this.log.info(
      {
        ms: Date.now() - started,
        gpu: llama.gpu,
        gpuLayers: loaded.model.gpuLayers,
        modelBytes: loaded.model.size,
        contextSize: loaded.context.contextSize,
        sequences: this.sequences,
        adapterScale: adapterFile ? this.loraScale : undefined,
      },
      "local model loaded",
    );
    return loaded;
  }

  /**
   * The checked local file for a source, downloaded first when it is a URI whose file is not on
   * disk yet. A file that came from a URI and is damaged says so, with the way to fetch it again.
   */
  private async localFile(source: ModelSource, role: ModelFileRole, closing: AbortSignal): Promise<string> {
    const report = new DownloadReport(source, this.log, this.progressBar);
    let downloading = false;
    let file: string;
    try {
      file = await fetchModelFile(source, {
        role,
        directory: (role === "model" ? this.files.modelsDir : this.files.adaptersDir)!,
        huggingFaceEndpoint: this.files.huggingFaceEndpoint,
        huggingFaceToken: this.files.huggingFaceToken,
        stallMs: this.files.downloadStallMs!,
        deadlineMs: this.files.downloadTimeoutMs!,
        signal: closing,
        onProgress: (progress) => {
          downloading = true;
          report.update(progress);
          this.progress = { step: "downloading", text: report.text };
        },
      });
    } catch (err) {
      report.fail();
      throw err;
    }
    if (downloading) report.finish(file);
    this.progress = { step: "loading", text: `loading ${modelSourceName(source)}` };
    await checkGgufFile(file, role, source.kind === "file" ? {} : { downloadedFrom: describeModelSource(source) });
    return file;
  }

  /** Loads the model, applies the adapter and creates the context; stops early when `signal` aborts. */
  private async loadIntoLlama(llama: Llama, modelFile: string, adapterFile: string | undefined, signal: AbortSignal): Promise<Loaded> {
    const model = await this.step(
      () => {
        let reported = 0;
        return llama.loadModel({
          modelPath: modelFile,
          gpuLayers: this.gpuLayers,
          loadSignal: signal,
          onLoadProgress: (progress) => {
            // Quarter steps: a 4 GB model on a slow disk takes long enough to want a sign of life.
            if (progress >= reported + 0.25 || progress === 1) {
              reported = progress;
              this.log.info({ progress: Math.round(progress * 100) }, "loading local model");
            }
          },
        });
      },
      (reason) => `Cannot load the local model ${modelFile}: ${reason}`,
      signal,
    );

    let context: LlamaContext;
    try {
      context = await this.step(
        () =>
          model.createContext({
            contextSize: this.contextSize,
            sequences: this.sequences,
            threads: this.threads,
            createSignal: signal,
            ...(adapterFile ? { lora: { adapters: [{ filePath: adapterFile, scale: this.loraScale }] } } : {}),
          }),
        (reason, err) => {
          if (adapterFile && /lora/i.test((err as Error).message)) {
            return `Cannot apply the LoRA adapter ${adapterFile} to the model ${modelFile}: ${reason}`;
          }
          if (err instanceof InsufficientMemoryError) {
            return `Not enough memory for ${this.sequences} sequences × ${this.contextSize} tokens of context with ${modelFile}; lower LLAMA_CONTEXT_SIZE or LLAMA_SEQUENCES (${reason})`;
          }
          return `Cannot create a llama.cpp context for ${modelFile}: ${reason}`;
        },
        signal,
      );
    } catch (err) {
      await model.dispose();
      throw err;
    }

    const sequences = Array.from({ length: this.sequences }, () => context.getSequence());
    return { modelFile, adapterFile, model, context, slots: new ChannelSlots(sequences), firstToken: firstPromptToken(model) };
  }

  private async free(loaded: Loaded): Promise<void> {
    await loaded.context.dispose();
    await loaded.model.dispose();
    this.log.info({ model: loaded.modelFile }, "local model unloaded");
  }

  /**
   * Runs one load step, turning its failure into a BackendError that carries llama.cpp's own
   * reason when it logged one (node-llama-cpp's messages are generic), and a raw JavaScript error
   * from node-llama-cpp into words about the file. An abort passes through as it is.
   */
  private async step<T>(run: () => Promise<T>, describe: (reason: string, err: unknown) => string, signal: AbortSignal): Promise<T> {
    this.llamaErrors.length = 0;
    try {
      return await run();
    } catch (err) {
      if (err instanceof BackendError || signal.aborted) throw err;
      // llama.cpp's log lines arrive through the event loop; let any still queued land first.
      await new Promise((resolve) => setImmediate(resolve));
      const reason = llamaFailureReason(this.llamaErrors) ?? describeLoadError(err);
      throw new BackendError("load", describe(reason, err), { cause: err });
    }
  }

  private onLlamaLog(level: LlamaLogLevel, message: string): void {
    if (LlamaLogLevelGreaterThanOrEqual(level, LlamaLogLevel.error)) {
      this.llamaErrors.push(message);
      this.log.error({ llama: message.trim() }, "llama.cpp error");
    } else {
      this.log.warn({ llama: message.trim() }, "llama.cpp warning");
    }
  }

  // ── Generation ─────────────────────────────────────────────────────────────────────────────

  private async *generateInChannel(request: GenerateRequest): AsyncGenerator<string, LocalGenerationStats, undefined> {
    const { channelId } = request;
    const signal = AbortSignal.any([request.signal, this.closing.signal]);
    if (signal.aborted) throw this.abortedError(request, 0);

    let loaded: Loaded;
    let lease: Lease<LlamaContextSequence>;
    try {
      // The first reply waits for the load (a load error is this reply's error), unless aborted meanwhile.
      loaded = await untilAborted(this.load(), signal);
      lease = await loaded.slots.acquire(channelId, signal);
    } catch (err) {
      if (signal.aborted) throw this.abortedError(request, 0);
      throw err;
    }
    // Tracked until llama.cpp is done with the sequence, which does not wait for a paused reader.
    let untrack!: () => void;
    const working = new Promise<void>((resolve) => (untrack = resolve));
    this.inFlight.add(working);
    void working.then(() => this.inFlight.delete(working));
    // Aborted when the reader stops early (return() on this generator): the decode loop drops the sequence.
    const readerGone = new AbortController();
    let job: Promise<DecodeJobEnd> | undefined;
    let sampled = 0;
    const started = performance.now();
    let firstTokenMs = Number.NaN;
    try {
      const sequence = lease.slot.sequence;
      const { model } = loaded;
      // Another channel's transcript must never leak into this one.
      if (lease.reassigned) await sequence.clearHistory();

      const { budget, maxTokens } = promptBudget(sequence.contextSize, request.maxTokens, loaded.firstToken !== null);
      const fit = fitPrompt({
        turns: request.turns,
        firstTurnAt: lease.slot.firstTurnAt,
        budget,
        trimToFraction: TRIM_TO_FRACTION,
        // Tokens, not the string: node-llama-cpp trims a string's leading space before tokenizing.
        encode: (turns) => model.tokenize(renderScript(request.persona, turns)),
      });
      if (!fit) {
        throw new BackendError(
          "too_long",
          `The newest message does not fit the local model's context of ${sequence.contextSize} tokens per channel (LLAMA_CONTEXT_SIZE).`,
        );
      }
      if (fit.trimmed) this.log.info({ channelId, droppedTurns: fit.start }, "local prompt trimmed to fit the context");

      const fresh = loaded.firstToken === null ? [...fit.tokens] : [loaded.firstToken, ...fit.tokens];
      // The previous reply as the model sampled it, where its text is unchanged, so its cache stays valid.
      const reused = reuseCachedTokens(sequence.contextTokens, fresh, tokenCodec(model));
      const input = reused.length + maxTokens < sequence.contextSize ? reused : fresh;
      const { evaluated, tail } = await prefill(sequence, input, signal);
      lease.slot.firstTurnAt = request.turns[fit.start]?.at;

      const chunks = new ChunkQueue<string>();
      const text = new TokenText(model);
      const stops = new StopScanner(request.stop);
      const reply: Token[] = [];
      let stopReason: LocalStopReason = "maxTokens";
      const release = (piece: string): void => {
        if (piece) chunks.push(piece);
      };
      job = this.decoder
        .run({
          // The prompt's tail is decoded in the same pass that samples the first reply token.
          tokens: sequence.evaluate(tail, {
            temperature: request.temperature,
            ...(request.seed !== undefined ? { seed: request.seed } : {}),
            topK: TOP_K,
            ...(request.temperature > 0 ? { topP: request.topP } : {}),
            repeatPenalty: {
              punishTokens: () => reply.slice(-REPEAT_PENALTY_TOKENS).filter((t) => t !== model.tokens.nl),
              maxPunishTokens: REPEAT_PENALTY_TOKENS,
            },
          }),
          signal: AbortSignal.any([signal, readerGone.signal]),
          accept: (token) => {
            if (sampled++ === 0) firstTokenMs = performance.now() - started;
            reply.push(token);
            const scan = stops.push(text.push(token));
            release(scan.text);
            if (scan.stopped) {
              stopReason = "stop";
              return false;
            }
            return sampled < maxTokens;
          },
        })
        .then((end) => {
          if (end === "aborted") {
            if (!signal.aborted) this.log.debug({ channelId, completionTokens: sampled }, "local generation ended by its reader");
            return end;
          }
          // Text held back as a possible stop is the reply's after all, up to a stop it holds.
          const last = stops.flush();
          release(last.text);
          if (last.stopped) stopReason = "stop";
          else if (end === "eog") stopReason = "eos";
          return end;
        })
        .finally(() => {
          chunks.end();
          untrack();
        });
      job.catch(() => undefined); // observed below; this keeps an early exit from leaving it unhandled

      for await (const chunk of chunks) yield chunk;
      await job;
      signal.throwIfAborted();

      const stats: LocalGenerationStats = {
        promptTokens: input.length,
        completionTokens: sampled,
        evaluatedPromptTokens: evaluated,
        stopReason,
        droppedTurns: fit.start,
        firstTokenMs,
      };
      this.log.debug({ channelId, ...stats, ms: Math.round(performance.now() - started) }, "local generation");
      return stats;
    } catch (err) {
      if (signal.aborted) throw this.abortedError(request, sampled);
      if (err instanceof BackendError) throw err;
      throw new BackendError("unknown", `Local generation failed: ${(err as Error).message}`, { cause: err });
    } finally {
      // Also reached when the reader stops early (return()): end the decoding before freeing the sequence.
      readerGone.abort();
      await job?.catch(() => undefined);
      lease.release();
      untrack();
    }
  }

  private abortedError(request: GenerateRequest, completionTokens: number): BackendError {
    const why = this.closing.signal.aborted && !request.signal.aborted ? "the local backend is closing" : "the request was aborted";
    this.log.debug({ channelId: request.channelId, completionTokens, stopReason: "abort" }, "local generation aborted");
    return new BackendError("aborted", `Local generation in channel ${request.channelId} stopped after ${completionTokens} tokens: ${why}.`);
  }
}

/**
 * Evaluates the prompt into the sequence up to its tail, reusing the cached prefix, in chunks so
 * an abort is noticed between them. The tail (at least one token) is left for the decode that
 * samples the first reply token, so no pass over the weights is spent on it alone.
 * Returns the tail and how many prompt tokens are evaluated in all (the rest came from the cache).
 */
async function prefill(sequence: LlamaContextSequence, input: readonly Token[], signal: AbortSignal): Promise<{ evaluated: number; tail: Token[] }> {
  // Erases whatever follows the common prefix (the previous reply's tail, an old window start).
  // At least the last token stays to evaluate: its logits give the first reply token.
  await sequence.adaptStateToTokens(input.slice(0, -1), false);
  const from = sequence.nextTokenIndex;
  const tailStart = from + Math.floor((input.length - 1 - from) / PREFILL_CHUNK) * PREFILL_CHUNK;
  for (let i = from; i < tailStart; i += PREFILL_CHUNK) {
    signal.throwIfAborted();
    await sequence.evaluateWithoutGeneratingNewTokens(input.slice(i, i + PREFILL_CHUNK));
  }
  signal.throwIfAborted();
  return { evaluated: input.length - from, tail: input.slice(tailStart) };
}

function tokenCodec(model: LlamaModel): TokenCodec<Token> {
  return {
    detokenize: (tokens, before) => model.detokenize(tokens, false, before),
    tokenizeContinuation: (text) => model.tokenize(text, false, "trimLeadingSpace"),
  };
}

/** Settles like `promise`, or rejects as soon as `signal` aborts (the promise itself goes on). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
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
