import { open } from "node:fs/promises";
import { BackendError } from "../../core/backend.ts";

const GGUF_MAGIC = "GGUF";

/**
 * Checks that `path` is a readable GGUF file before llama.cpp sees it, so the error names the file
 * and says what is wrong ("not found", "not GGUF") instead of a generic load failure.
 */
export async function checkGgufFile(path: string, role: "model" | "LoRA adapter"): Promise<void> {
  let head: Buffer;
  try {
    const file = await open(path, "r");
    try {
      const stat = await file.stat();
      if (!stat.isFile()) throw new BackendError("load", `The local ${role} path ${path} is not a file.`);
      head = Buffer.alloc(4);
      const { bytesRead } = await file.read(head, 0, 4, 0);
      head = head.subarray(0, bytesRead);
    } finally {
      await file.close();
    }
  } catch (err) {
    if (err instanceof BackendError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new BackendError("load", `The local ${role} file ${path} does not exist. ${hint(role)}`);
    if (code === "EISDIR") throw new BackendError("load", `The local ${role} path ${path} is a directory, not a GGUF file.`);
    throw new BackendError("load", `Cannot read the local ${role} file ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (head.toString("latin1") !== GGUF_MAGIC) {
    const seen = head.length === 0 ? "it is empty" : `it starts with bytes ${head.toString("hex")}`;
    throw new BackendError("load", `The local ${role} file ${path} is not a GGUF file (${seen}). ${hint(role)}`);
  }
}

function hint(role: "model" | "LoRA adapter"): string {
  return role === "model"
    ? "Set LLAMA_MODEL_PATH to a GGUF model (see docs/LOCAL.md)."
    : "Set LLAMA_LORA_PATH to a GGUF adapter made with llama.cpp's convert_lora_to_gguf.py (see docs/LOCAL.md).";
}

/**
 * llama.cpp's own words for why a load failed, from the error lines it logged meanwhile
 * (node-llama-cpp only says `Failed to initialize LoRA adapter`). The function-name prefix and
 * the generic lead-in are dropped: "llama_adapter_lora_init: failed to apply lora adapter:
 * tensor 'x' has incorrect shape" becomes "tensor 'x' has incorrect shape".
 */
export function llamaFailureReason(errorLines: readonly string[]): string | undefined {
  const line = errorLines.findLast((l) => l.trim() !== "");
  if (!line) return undefined;
  return line
    .trim()
    .replace(/^[a-z_0-9]+: /i, "")
    .replace(/^(?:failed to apply lora adapter|error loading model|failed to load model): /i, "")
    .trim();
}
