/**
 * A model or adapter file's identity, for keying saved KV states, without hashing gigabytes at
 * every start: the file's size, its GGUF metadata and tensor layout whole, and a sample of its
 * weights (a fine-tune of the same base has the same layout and size, but other weights).
 */
import { createHash } from "node:crypto";
import { open } from "node:fs/promises";

/** Pieces of the tensor data hashed, spread evenly over it, and the bytes of each. */
const SAMPLES = 16;
const SAMPLE_BYTES = 64 * 1024;

/** `size:sha256` of the first `metadataBytes` (the header and tensor infos) and the weight samples. */
export async function fileIdentity(path: string, metadataBytes: number): Promise<string> {
  const file = await open(path, "r");
  try {
    const size = (await file.stat()).size;
    const hash = createHash("sha256");
    const read = async (position: number, length: number): Promise<void> => {
      const buffer = Buffer.alloc(Math.max(0, Math.min(length, size - position)));
      if (buffer.length === 0) return;
      const { bytesRead } = await file.read(buffer, 0, buffer.length, position);
      hash.update(buffer.subarray(0, bytesRead));
    };
    await read(0, metadataBytes);
    const data = size - metadataBytes;
    for (let i = 0; i < SAMPLES && data > 0; i++) {
      await read(metadataBytes + Math.floor((data * i) / SAMPLES), SAMPLE_BYTES);
    }
    return `${size}:${hash.digest("hex")}`;
  } finally {
    await file.close();
  }
}
