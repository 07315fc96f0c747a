/**
 * LLAMA_LORA_PATH may name a PEFT adapter folder (adapter_config.json + adapter_model.safetensors)
 * instead of a GGUF adapter. It is imported once, against the model being loaded, into
 * adapters/NAME-HASH.gguf; HASH covers the adapter's files and the base's shapes, so a retrained
 * adapter (or another base) is imported again, and an unchanged one is reused at once.
 */
import { createHash } from "node:crypto";
import { createReadStream, existsSync, statSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import type { Logger } from "pino";
import { readBaseModelShape } from "../../adapters/base-model.ts";
import { AdapterError } from "../../adapters/errors.ts";
import { importPeftAdapter } from "../../adapters/import.ts";
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from "../../adapters/peft-config.ts";
import { BackendError } from "../../core/backend.ts";
import type { ModelSource } from "../../core/model-source.ts";

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
      onProgress: (done, total) => options.onProgress(`importing the PEFT adapter ${name} (${Math.floor((100 * done) / total)}%)`),
    });
    options.log.info({ peftDir, out, pairs: imported.pairs, bytes: imported.bytes, alpha: imported.alpha, notes: imported.notes, ms: Date.now() - started }, "imported PEFT adapter");
    return out;
  } catch (err) {
    if (err instanceof AdapterError) throw new BackendError("load", `Cannot import the PEFT adapter in ${peftDir} (LLAMA_LORA_PATH): ${err.message}`);
    throw err;
  }
}

/** Adds a file's length and bytes to the hash (a missing file adds a marker), streaming. */
async function hashFile(hash: ReturnType<typeof createHash>, path: string): Promise<void> {
  if (!existsSync(path)) {
    hash.update(`missing:${basename(path)};`);
    return;
  }
  hash.update(`${basename(path)}:${statSync(path).size};`);
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
}
