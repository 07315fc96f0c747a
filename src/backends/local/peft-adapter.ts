/**
 * LLAMA_LORA_PATH may name a PEFT adapter folder (adapter_config.json + adapter_model.safetensors)
 * or a Hugging Face repository holding one (`hf:user/repo`, no tag and no file: a GGUF adapter in
 * a repository is named by its file or tag). A repository's files are downloaded once into
 * adapters/hf_USER_REPO/ through the models' downloader. The folder is imported once, against the
 * model being loaded, into adapters/NAME-HASH.gguf; HASH covers the adapter's files and the base's
 * shapes, so a retrained adapter (or another base) is imported again, and an unchanged one is
 * reused at once.
 */
import { createHash } from "node:crypto";
import { createReadStream, existsSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import type { Logger } from "pino";
import { readBaseModelShape } from "../../adapters/base-model.ts";
import { AdapterError } from "../../adapters/errors.ts";
import { importPeftAdapter } from "../../adapters/import.ts";
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from "../../adapters/peft-config.ts";
import { BackendError } from "../../core/backend.ts";
import type { ModelSource } from "../../core/model-source.ts";
import { fetchModelFile } from "./model-download.ts";

/** Whether a LLAMA_LORA_PATH source is a PEFT folder rather than a GGUF file. */
export function isPeftFolder(source: ModelSource): source is { kind: "file"; path: string } {
  if (source.kind !== "file") return false;
  try {
    return statSync(source.path).isDirectory() && existsSync(join(source.path, ADAPTER_CONFIG_FILE));
  } catch {
    return false;
  }
}

export interface PeftImportOptions {
  adaptersDir: string;
  log: Logger;
  /** Progress in words, for /model local and /status. */
  onProgress(text: string): void;
  /** general.name when the folder's own name is a cache's (hf_user_repo). */
  nameHint?: string;
}

export interface PeftSourceOptions extends Omit<PeftImportOptions, "nameHint" | "onProgress"> {
  huggingFaceEndpoint?: string;
  huggingFaceToken?: string;
  stallMs: number;
  /** The whole download's deadline (LLAMA_DOWNLOAD_TIMEOUT_S). */
  deadlineMs: number;
  signal: AbortSignal;
  onProgress(step: "downloading" | "importing", text: string): void;
}

const HF_REPO = /^(?:hf|huggingface):(?:\/\/)?([^/:#\s]+)\/([^/:#\s]+)(?:#([^\s]+))?$/i;
/**
 * The files fetched from a repository. Not the model card: node-llama-cpp's downloader retries a
 * missing file for minutes, and a card only describes the adapter (its name comes from the repo's).
 */
const PEFT_REPO_FILES = [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE] as const;

/**
 * The GGUF adapter for LLAMA_LORA_PATH when it names a PEFT folder or repository, imported (and
 * downloaded) as needed; undefined when it names a GGUF adapter, which the caller loads as it is.
 */
export async function peftAdapterFile(source: ModelSource, modelFile: string, options: PeftSourceOptions): Promise<string | undefined> {
  const importOptions = { adaptersDir: options.adaptersDir, log: options.log, onProgress: (text: string) => options.onProgress("importing", text) };
  if (isPeftFolder(source)) return importedPeftAdapter(source.path, modelFile, importOptions);
  const repo = source.kind === "huggingface" ? peftRepository(source.uri) : undefined;
  if (!repo) return undefined;
  const folder = await downloadPeftRepository(repo, options);
  return importedPeftAdapter(folder, modelFile, { ...importOptions, nameHint: repo.name });
}

export interface PeftRepository {
  uri: string;
  user: string;
  name: string;
  branch: string;
}

/** `hf:user/repo` (optionally `#branch`), with no tag and no file: a PEFT adapter repository. */
export function peftRepository(uri: string): PeftRepository | undefined {
  const m = HF_REPO.exec(uri);
  return m ? { uri, user: m[1]!, name: m[2]!, branch: m[3] ?? "main" } : undefined;
}

/** Downloads a PEFT repository's two files into adaptersDir/hf_USER_REPO/ (once: later calls find them there, offline). */
export async function downloadPeftRepository(repo: PeftRepository, options: Omit<PeftSourceOptions, "log">): Promise<string> {
  const folder = join(options.adaptersDir, `hf_${repo.user}_${repo.name}`);
  const endpoint = (options.huggingFaceEndpoint ?? "https://huggingface.co/").replace(/\/?$/, "/");
  for (const file of PEFT_REPO_FILES) {
    const url = `${endpoint}${repo.user}/${repo.name}/resolve/${encodeURIComponent(repo.branch)}/${file}`;
    await fetchModelFile(
      { kind: "url", url, fileName: file },
      {
        role: "LoRA adapter",
        directory: folder,
        huggingFaceEndpoint: options.huggingFaceEndpoint,
        huggingFaceToken: options.huggingFaceToken,
        stallMs: options.stallMs,
        deadlineMs: options.deadlineMs,
        expect: "any",
        signal: options.signal,
        onProgress: ({ downloadedBytes, totalBytes }) =>
          options.onProgress("downloading", `downloading ${file} of ${repo.uri}${totalBytes > 0 ? ` (${Math.floor((100 * downloadedBytes) / totalBytes)}%)` : ""}`),
      },
    );
  }
  return folder;
}

/**
 * The GGUF for the PEFT folder `peftDir` on the base `modelFile`: the one already in `adaptersDir`
 * if its hash matches, else a fresh import. Throws BackendError("load") saying why it cannot be imported.
 */
export async function importedPeftAdapter(peftDir: string, modelFile: string, options: PeftImportOptions): Promise<string> {
  const name = basename(resolve(peftDir));
  try {
    const base = await readBaseModelShape(modelFile);
    const hash = createHash("sha256").update(JSON.stringify({ ...base, source: undefined }));
    for (const file of [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, "README.md"]) await hashFile(hash, join(peftDir, file));
    const out = join(options.adaptersDir, `${name}-${hash.digest("hex").slice(0, 12)}.gguf`);
    if (existsSync(out)) return out;
    const started = Date.now();
    options.onProgress(`importing the PEFT adapter ${name}`);
    const imported = await importPeftAdapter({
      peftDir,
      base,
      out,
      outType: "f32",
      ...(options.nameHint ? { nameHint: options.nameHint } : {}),
      onProgress: (done, total) => options.onProgress(`importing the PEFT adapter ${name} (${Math.floor((100 * done) / total)}%)`),
    });
    options.log.info({ peftDir, out, pairs: imported.pairs, bytes: imported.bytes, alpha: imported.alpha, notes: imported.notes, ms: Date.now() - started }, "imported PEFT adapter");
    return out;
  } catch (err) {
    if (err instanceof AdapterError) throw new BackendError("load", `Cannot import the PEFT adapter in ${peftDir} (LLAMA_LORA_PATH): ${err.message}`);
    throw err;
  }
}

/**
 * Adds a file's length and bytes to the hash (a missing file adds a marker), streaming. Anything
 * but a regular file is refused first: reading a named pipe would wait for a writer for ever.
 */
async function hashFile(hash: ReturnType<typeof createHash>, path: string): Promise<void> {
  if (!existsSync(path)) {
    hash.update(`missing:${basename(path)};`);
    return;
  }
  const stat = statSync(path);
  if (!stat.isFile()) throw new BackendError("load", `Cannot import the PEFT adapter in ${dirname(path)} (LLAMA_LORA_PATH): ${basename(path)} is not a file.`);
  hash.update(`${basename(path)}:${stat.size};`);
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
}
