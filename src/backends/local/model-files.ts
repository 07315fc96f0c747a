/**
 * Checks a GGUF file before llama.cpp sees it, so that a bad file fails at once with an error that
 * names the file and what is wrong, never hangs, and never reaches a generic or raw error. The
 * layout itself is walked by src/gguf/reader.ts, bounded by the file's size (issue 10).
 */
import { BackendError } from "../../core/backend.ts";
import { DamagedGgufError, NotAFileError, NotGgufError, readGgufFile, type GgufLayout } from "../../gguf/reader.ts";

export type ModelFileRole = "model" | "LoRA adapter";

/** What a checked GGUF file holds. */
export type GgufSummary = GgufLayout;

/**
 * Checks that `path` is a whole, well-formed GGUF file for its role before llama.cpp sees it.
 * Throws BackendError("load") naming the file and the reason. `downloadedFrom` (the URI it came
 * from) changes the advice: a damaged download is fixed by deleting it, not by editing a setting.
 */
export async function checkGgufFile(path: string, role: ModelFileRole, options: { downloadedFrom?: string } = {}): Promise<GgufSummary> {
  const fail = (what: string): never => {
    throw new BackendError("load", `The local ${role} file ${path} ${what} ${advice(path, role, options.downloadedFrom)}`);
  };
  let summary: GgufSummary;
  try {
    summary = await readGgufFile(path);
  } catch (err) {
    if (err instanceof NotAFileError) return fail("is not a file.");
    if (err instanceof NotGgufError) return fail(`is not a GGUF file (${err.message}).`);
    if (err instanceof DamagedGgufError) return fail(`is damaged or truncated: ${err.message}.`);
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return fail("does not exist.");
    if (code === "EISDIR") return fail("is a directory, not a GGUF file.");
    throw new BackendError("load", `Cannot read the local ${role} file ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (role === "model" && summary.type === "adapter") {
    fail("is a LoRA adapter, not a model (general.type is \"adapter\"): give it as LLAMA_LORA_PATH and a base model as LLAMA_MODEL_PATH.");
  }
  if (role === "LoRA adapter" && summary.type !== "adapter") {
    fail(`is not a LoRA adapter (general.type is ${summary.type === undefined ? "missing" : JSON.stringify(summary.type)}; a model, perhaps?).`);
  }
  return summary;
}

function advice(path: string, role: ModelFileRole, downloadedFrom: string | undefined): string {
  if (downloadedFrom) return `It was downloaded from ${downloadedFrom}; delete ${path} and Friend downloads it again.`;
  return role === "model"
    ? "Set LLAMA_MODEL_PATH to a GGUF model (see docs/LOCAL.md)."
    : "Set LLAMA_LORA_PATH to a GGUF adapter (`friend adapter import` makes one from a PEFT folder) or to the PEFT folder itself (see docs/FINETUNING.md).";
}

/**
 * llama.cpp's own words for why a load failed, from the error lines it logged meanwhile
 * (node-llama-cpp only says `Failed to initialize LoRA adapter`). The function-name prefix and
 * the generic lead-in are dropped: "llama_adapter_lora_init: failed to apply lora adapter:
 * tensor 'x' has incorrect shape" becomes "tensor 'x' has incorrect shape". A generic closing
 * line ("llama_model_load_from_file_impl: failed to load model") gives way to the line before it
 * that says why.
 */
export function llamaFailureReason(errorLines: readonly string[]): string | undefined {
  const reasons = errorLines
    .map((line) =>
      line
        .trim()
        .replace(/^[a-z_0-9]+: /i, "")
        .replace(/^(?:failed to apply lora adapter|error loading model|failed to load model): /i, "")
        .trim(),
    )
    .filter((line) => line !== "");
  return reasons.findLast((line) => !/^failed to load model\b/i.test(line)) ?? reasons.at(-1);
}

/**
 * A raw error from inside node-llama-cpp's JavaScript (a TypeError such as "Cannot read properties
 * of undefined (reading 'architecture')") said as a reason about the file.
 */
export function describeLoadError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof TypeError || err instanceof RangeError) {
    return `node-llama-cpp could not make sense of its metadata (${message}); the file may be damaged or not a llama.cpp model`;
  }
  return message;
}
