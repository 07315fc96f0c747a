/**
 * Turns a model source into a local file, downloading it with node-llama-cpp's own
 * `resolveModelFile` (resumable, split GGUFs, Hugging Face URIs) when it is not on disk yet.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { readGgufFileInfo, resolveModelFile } from "node-llama-cpp";
import type { Logger } from "pino";
import { BackendError } from "../../core/backend.ts";
import type { ModelFileRole } from "./model-files.ts";
import { ModelUrlError, resolveModelUrl } from "./model-url.ts";
import { describeModelSource, modelSourceName, withoutUrlSecrets, type ModelSource } from "../../core/model-source.ts";
import { untilAborted } from "../../core/abort.ts";

export interface DownloadProgress {
  downloadedBytes: number;
  /** 0 until the server has said how big the file is. */
  totalBytes: number;
}

export interface FetchModelFileOptions {
  role: ModelFileRole;
  /** Where downloads go and are looked for (models/ or adapters/). */
  directory: string;
  /** Replaces https://huggingface.co/ for hf: URIs (a mirror, or a loopback fake in tests). */
  huggingFaceEndpoint?: string;
  /** For gated Hugging Face repositories. Unset: node-llama-cpp's own lookup (HF_TOKEN, then the Hugging Face CLI's token file). */
  huggingFaceToken?: string;
  /** A download that receives no new bytes for this long fails, instead of retrying for many minutes. */
  stallMs: number;
  /** The longest a whole download may take; what arrived is kept for the next attempt. */
  deadlineMs: number;
  /** What the file must be: a GGUF (models and GGUF adapters, the default), or anything (a PEFT adapter's files). */
  expect?: "gguf" | "any";
  /** How often a broken-off transfer may start again within one attempt. Default MAX_RESUMES. */
  maxResumes?: number;
  /** Stops the download, keeping what arrived for the next attempt to resume. */
  signal: AbortSignal;
  onProgress(progress: DownloadProgress): void;
}

/**
 * node-llama-cpp's downloader retries a broken transfer 150 times with growing pauses (about 13
 * minutes against a server whose content-length is wrong); a few are enough for a flaky network.
 */
export const MAX_RESUMES = 8;

/** Why a download was stopped from here, for the reason in its error. */
type Limit = { kind: "stall" } | { kind: "deadline" } | { kind: "resumes" };

/**
 * The local file for `source`. A path is returned as it is. A URI's file is looked for in
 * `options.directory`, and used from there without any network once present; otherwise it is
 * downloaded there first (resuming a partial download). Throws BackendError("load") naming the
 * URI and the reason, or BackendError("aborted") when `options.signal` aborts.
 */
export async function fetchModelFile(source: ModelSource, options: FetchModelFileOptions): Promise<string> {
  if (source.kind === "file") return source.path;
  const limit = new AbortController();
  const stop = (kind: Limit["kind"]): void => limit.abort({ kind } satisfies Limit);
  const watchdog = setTimeout(() => stop("stall"), options.stallMs);
  const deadline = setTimeout(() => stop("deadline"), options.deadlineMs);
  const signal = AbortSignal.any([options.signal, limit.signal]);
  const maxResumes = options.maxResumes ?? MAX_RESUMES;
  let transferring = false;
  // The most bytes seen so far; a transfer that starts again from less is a resume.
  let mostBytes = 0;
  let lastBytes = 0;
  let totalBytes = 0;
  let resumes = 0;
  let download: Promise<string> | undefined;
  try {
    let location = source.kind === "url" ? source.url : source.uri;
    let headers: Record<string, string> | undefined;
    // node-llama-cpp finds a file already downloaded without any request; only a missing one is probed.
    if (source.kind === "url" && !existsSync(join(options.directory, source.fileName))) {
      ({ url: location, headers } = await resolveModelUrl(source.url, signal, options.expect));
      watchdog.refresh(); // the server answered: silence is counted from here
    }
    download = resolveModelFile(location, {
      directory: options.directory,
      // A URL's file keeps the URL's name, so it is found again offline; hf: URIs get node-llama-cpp's names.
      ...(source.kind === "url" ? { fileName: source.fileName } : {}),
      ...(headers && Object.keys(headers).length > 0 ? { headers } : {}),
      cli: false,
      // An interrupted download (a restart, a lost connection) resumes from its partial file.
      deleteTempFileOnCancel: false,
      signal,
      ...(options.huggingFaceEndpoint ? { endpoints: { huggingFace: options.huggingFaceEndpoint } } : {}),
      ...(options.huggingFaceToken ? { tokens: { huggingFace: options.huggingFaceToken } } : {}),
      onProgress: ({ totalSize, downloadedSize }) => {
        transferring = true;
        totalBytes = totalSize;
        if (downloadedSize < lastBytes && ++resumes > maxResumes) stop("resumes");
        lastBytes = downloadedSize;
        // Bytes sent again after a break are not progress: a server that always breaks off at the same place stalls.
        if (downloadedSize > mostBytes) {
          mostBytes = downloadedSize;
          watchdog.refresh();
        }
        options.onProgress({ downloadedBytes: downloadedSize, totalBytes: totalSize });
      },
    });
    // Observed from the start: a rejection after a stop must never go unhandled.
    download.catch(() => undefined);
    // node-llama-cpp only hands the signal to the transfer; its first request retries for minutes.
    return await untilAborted(download, signal);
  } catch (err) {
    // Let a stopped transfer save its progress, so that the next attempt resumes from it.
    if (download && signal.aborted && transferring) await settledWithin(download, CANCEL_GRACE_MS);
    const what = `the local ${options.role} ${describeModelSource(source)}`;
    if (options.signal.aborted) throw new BackendError("aborted", `Stopped downloading ${what}: ${(options.signal.reason as Error)?.message ?? "aborted"}`);
    const progress = { mostBytes, totalBytes, resumes };
    const reason = limit.signal.aborted ? limitReason(limit.signal.reason as Limit, options, progress) : downloadFailureReason(err, source);
    throw new BackendError("load", `Cannot download ${what} into ${options.directory}/: ${reason}`);
  } finally {
    clearTimeout(watchdog);
    clearTimeout(deadline);
  }
}

/** Why a limit stopped a download, with what it had seen: a server that breaks off or lies about the size reads differently from one that is silent. */
function limitReason(limit: Limit, options: FetchModelFileOptions, { mostBytes, totalBytes, resumes }: { mostBytes: number; totalBytes: number; resumes: number }): string {
  const got = totalBytes > 0 ? `${formatBytes(mostBytes)} of the ${formatBytes(totalBytes)} the server announced` : formatBytes(mostBytes);
  const keep = mostBytes > 0 ? "; the next attempt resumes from what arrived" : "";
  if (limit.kind === "deadline") return `it took longer than ${options.deadlineMs / 1000} s (LLAMA_DOWNLOAD_TIMEOUT_S), with ${got}${keep}`;
  if (resumes > 0) {
    return `the transfer broke off ${resumes} time${resumes === 1 ? "" : "s"} and never got past ${got} (a truncated file on the server, or a content-length that is wrong)`;
  }
  if (mostBytes > 0) return `the transfer stopped at ${got}: nothing more arrived for ${options.stallMs / 1000} s${keep}`;
  return `nothing arrived for ${options.stallMs / 1000} s (is the address right, and the server reachable?)`;
}

/** The tokenizer's long arrays: not needed to know a model's shapes, and most of its metadata bytes. */
const TOKENIZER_ARRAYS = ["tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"];

/**
 * A remote model's GGUF metadata, as a lookup by dotted key ("llama.block_count"), without
 * downloading the model: the copy in `directory` when one is there already, else only the
 * header's bytes over the network (node-llama-cpp reads them with range requests).
 */
export async function readModelMetadata(
  source: Exclude<ModelSource, { kind: "file" }>,
  options: Pick<FetchModelFileOptions, "directory" | "huggingFaceEndpoint" | "huggingFaceToken" | "signal">,
): Promise<{ localFile: string } | { lookup(key: string): unknown }> {
  const uri = source.kind === "url" ? source.url : source.uri;
  const endpoints = options.huggingFaceEndpoint ? { endpoints: { huggingFace: options.huggingFaceEndpoint } } : {};
  const tokens = options.huggingFaceToken ? { tokens: { huggingFace: options.huggingFaceToken } } : {};
  const local = await resolveModelFile(uri, {
    directory: options.directory,
    download: false,
    cli: false,
    ...(source.kind === "url" ? { fileName: source.fileName } : {}),
    ...endpoints,
    ...tokens,
  }).catch(() => undefined);
  if (local) return { localFile: local };
  try {
    const info = await readGgufFileInfo(uri, { readTensorInfo: false, ignoreKeys: TOKENIZER_ARRAYS, logWarnings: false, signal: options.signal, fetchRetryOptions: { retries: 2 }, ...endpoints, ...tokens });
    const metadata = info.metadata as unknown as Record<string, unknown>;
    return { lookup: (key) => key.split(".").reduce<unknown>((node, part) => (node !== null && typeof node === "object" ? (node as Record<string, unknown>)[part] : undefined), metadata) };
  } catch (err) {
    throw new BackendError("load", `Cannot read the metadata of ${describeModelSource(source)}: ${downloadFailureReason(err, source)}`);
  }
}

/** Why a download failed, in words, without the request's headers or the URL's query (either may hold a token). */
function downloadFailureReason(err: unknown, source: ModelSource): string {
  if (err instanceof ModelUrlError) return err.message;
  const { statusCode, statusText, message } = err as { statusCode?: unknown; statusText?: unknown; message?: unknown };
  const gated = source.kind === "huggingface" ? "; for a gated repository, set HF_TOKEN to a token that has access" : "";
  if (typeof statusCode === "number") {
    const answer = `the server answered ${statusCode}${typeof statusText === "string" && statusText ? ` ${statusText}` : ""}`;
    return statusCode === 401 || statusCode === 403 ? answer + gated : answer;
  }
  const text = withoutUrlSecrets(typeof message === "string" ? message : String(err));
  return /\b(?:401|403)\b/.test(text) ? text + gated : text;
}

/** How long a stopped download may take to wind down (close its file, save its progress). */
const CANCEL_GRACE_MS = 5000;

function settledWithin(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.then(
      () => undefined,
      () => undefined,
    ),
    new Promise<void>((resolve) => (timer = setTimeout(resolve, ms))),
  ]).finally(() => clearTimeout(timer));
}


/** Log a progress line at least this many percent apart. */
const LOG_EVERY_PERCENT = 5;
const BAR_WIDTH = 30;

/**
 * Says how a download is going: a log line every few percent, or, when `bar` is a terminal, a
 * progress bar there instead (log lines between redraws would tear it).
 */
export class DownloadReport {
  private loggedPercent = -LOG_EVERY_PERCENT;
  private drawnPercent = -1;
  private readonly started = Date.now();
  private latest: DownloadProgress = { downloadedBytes: 0, totalBytes: 0 };

  constructor(
    private readonly source: ModelSource,
    private readonly log: Logger,
    private readonly bar: NodeJS.WritableStream | undefined,
  ) {}

  /** What /status and the /model reply show, e.g. "downloading 37% of model.gguf (1.5 GB of 4.1 GB)". */
  get text(): string {
    const { downloadedBytes, totalBytes } = this.latest;
    const name = modelSourceName(this.source);
    if (totalBytes <= 0) return `downloading ${name}`;
    return `downloading ${percentOf(this.latest)}% of ${name} (${formatBytes(downloadedBytes)} of ${formatBytes(totalBytes)})`;
  }

  update(progress: DownloadProgress): void {
    this.latest = progress;
    if (progress.totalBytes <= 0) return;
    const percent = percentOf(progress);
    if (this.bar) {
      if (percent === this.drawnPercent) return;
      this.drawnPercent = percent;
      const filled = Math.round((percent / 100) * BAR_WIDTH);
      this.bar.write(`\r[${"#".repeat(filled)}${" ".repeat(BAR_WIDTH - filled)}] ${this.text}`);
    } else if (percent >= this.loggedPercent + LOG_EVERY_PERCENT || (percent === 100 && this.loggedPercent < 100)) {
      this.loggedPercent = percent;
      this.log.info({ source: describeModelSource(this.source), percent, downloadedBytes: progress.downloadedBytes, totalBytes: progress.totalBytes }, "downloading");
    }
  }

  finish(path: string): void {
    if (this.bar && this.drawnPercent >= 0) this.bar.write("\n");
    this.log.info({ source: describeModelSource(this.source), path, bytes: this.latest.totalBytes, ms: Date.now() - this.started }, "downloaded");
  }

  fail(): void {
    if (this.bar && this.drawnPercent >= 0) this.bar.write("\n");
  }
}

function percentOf({ downloadedBytes, totalBytes }: DownloadProgress): number {
  return Math.min(100, Math.floor((downloadedBytes / totalBytes) * 100));
}

/** Decimal units, as download sizes are usually given ("about 4.1 GB"). */
export function formatBytes(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}
