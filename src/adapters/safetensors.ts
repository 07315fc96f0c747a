/**
 * A safetensors reader: an 8-byte little-endian header length, a JSON header naming each tensor's
 * dtype, shape and byte range, then the raw little-endian data. Tensors are read one at a time by
 * their offsets, so a large adapter is never held in memory whole.
 *
 * The header is checked as strictly as the Rust `safetensors` crate does: every byte range must
 * match its shape and dtype, ranges must follow one another without gaps or overlaps, and the last
 * must end where the file does. A truncated file or a header that lies is refused before any
 * tensor is read.
 */
import type { FileHandle } from "node:fs/promises";
import { NotAFileError, openRegularFile } from "../gguf/reader.ts";

/** The dtypes an adapter's weights come in, and their sizes in bytes. */
export const SAFETENSORS_DTYPES = { F32: 4, F16: 2, BF16: 2 } as const;
export type SafetensorsDtype = keyof typeof SAFETENSORS_DTYPES;

/** Every dtype the format defines, so an unsupported one is named as such, not as garbage. */
const KNOWN_DTYPES = new Set(["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64", "C64"]);

/** The Rust crate's limit: a header larger than this is refused rather than parsed. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface SafetensorsTensor {
  name: string;
  dtype: SafetensorsDtype;
  /** PyTorch order: `[out, in]` for a linear weight. */
  shape: number[];
  /** Byte range within the data section (after the header). */
  begin: number;
  end: number;
}

/** A safetensors file that cannot be read; the message says where and why. */
export class SafetensorsError extends Error {
  constructor(
    readonly file: string,
    problem: string,
  ) {
    super(`${file}: ${problem}`);
    this.name = new.target.name;
  }
}

export class SafetensorsFile {
  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    /** Where the data section starts: 8 + the header's length. */
    private readonly dataStart: number,
    readonly tensors: ReadonlyMap<string, SafetensorsTensor>,
    /** The header's `__metadata__` (string to string), e.g. `{format: "pt"}`. */
    readonly metadata: Readonly<Record<string, string>>,
    readonly size: number,
  ) {}

  /** Opens and checks `path`; throws SafetensorsError naming the file and what is wrong. */
  static async open(path: string): Promise<SafetensorsFile> {
    const { file: handle, size } = await openRegularFile(path).catch((err: unknown) => {
      throw err instanceof NotAFileError ? new SafetensorsError(path, "is not a file") : err;
    });
    try {
      const fail = (problem: string): never => {
        throw new SafetensorsError(path, problem);
      };
      if (size < 8) fail(`is ${size} bytes long, too short for a safetensors file (an interrupted download or copy?)`);
      const lengthBytes = Buffer.alloc(8);
      await handle.read(lengthBytes, 0, 8, 0);
      const headerLength = lengthBytes.readBigUInt64LE(0);
      if (headerLength > BigInt(size - 8)) fail(`its header says it is ${headerLength} bytes long, but the file has only ${size - 8} after the length (truncated, or not a safetensors file)`);
      if (headerLength > BigInt(MAX_HEADER_BYTES)) fail(`its header is ${headerLength} bytes long, more than the ${MAX_HEADER_BYTES / 1024 / 1024} MiB any safetensors file may have`);
      const headerBytes = Buffer.alloc(Number(headerLength));
      await handle.read(headerBytes, 0, headerBytes.length, 8);
      const { tensors, metadata } = parseHeader(headerBytes, size - 8 - headerBytes.length, fail);
      return new SafetensorsFile(path, handle, 8 + headerBytes.length, tensors, metadata, size);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  /** The tensor's values as float32 (F16 and BF16 widen exactly). */
  async readFloat32(name: string): Promise<Float32Array> {
    const tensor = this.tensors.get(name);
    if (!tensor) throw new SafetensorsError(this.path, `has no tensor "${name}"`);
    const bytes = Buffer.alloc(tensor.end - tensor.begin);
    const { bytesRead } = await this.handle.read(bytes, 0, bytes.length, this.dataStart + tensor.begin);
    if (bytesRead !== bytes.length) throw new SafetensorsError(this.path, `ended while reading tensor "${name}" (the file changed while it was read?)`);
    return toFloat32(bytes, tensor.dtype);
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

function parseHeader(
  bytes: Buffer,
  dataBytes: number,
  fail: (problem: string) => never,
): { tensors: Map<string, SafetensorsTensor>; metadata: Record<string, string> } {
  let header: unknown;
  try {
    header = JSON.parse(bytes.toString("utf8"));
  } catch (err) {
    return fail(`its header is not valid JSON (${(err as Error).message}); not a safetensors file?`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) fail("its header is not a JSON object");
  const tensors: SafetensorsTensor[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof entry !== "object" || entry === null || Object.values(entry).some((v) => typeof v !== "string")) fail("its __metadata__ is not a map of strings");
      metadata = entry as Record<string, string>;
      continue;
    }
    tensors.push(parseEntry(name, entry, fail));
  }
  // The ranges must tile the data section exactly: no gaps, no overlaps, nothing past the end.
  tensors.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expected = 0;
  for (const t of tensors) {
    if (t.begin !== expected) {
      fail(t.begin < expected ? `tensor "${t.name}" overlaps the tensor before it (its data starts at ${t.begin}, before ${expected})` : `tensor "${t.name}" starts at byte ${t.begin} of the data, leaving a gap after byte ${expected}`);
    }
    if (t.end > dataBytes) fail(`tensor "${t.name}" ends at byte ${t.end} of the data, but the file holds only ${dataBytes} bytes of data (truncated?)`);
    expected = t.end;
  }
  if (expected !== dataBytes) fail(`its tensors cover ${expected} bytes of data, but the file holds ${dataBytes}`);
  return { tensors: new Map(tensors.map((t) => [t.name, t])), metadata };
}

function parseEntry(name: string, entry: unknown, fail: (problem: string) => never): SafetensorsTensor {
  const { dtype, shape, data_offsets: offsets } = (typeof entry === "object" && entry !== null ? entry : {}) as Record<string, unknown>;
  if (typeof dtype !== "string" || !Array.isArray(shape) || !Array.isArray(offsets)) fail(`tensor "${name}" lacks a dtype, shape or data_offsets in the header`);
  if (!(dtype in SAFETENSORS_DTYPES)) {
    fail(KNOWN_DTYPES.has(dtype as string) ? `tensor "${name}" is ${dtype}; adapters must be F32, F16 or BF16` : `tensor "${name}" has unknown dtype ${JSON.stringify(dtype)}`);
  }
  const isCount = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;
  if (!(shape as unknown[]).every(isCount)) fail(`tensor "${name}" has a shape that is not a list of whole numbers: ${JSON.stringify(shape)}`);
  if ((offsets as unknown[]).length !== 2 || !(offsets as unknown[]).every(isCount)) fail(`tensor "${name}" has data_offsets that are not two byte positions: ${JSON.stringify(offsets)}`);
  const [begin, end] = offsets as [number, number];
  const bytes = (shape as number[]).reduce((a, b) => a * b, 1) * SAFETENSORS_DTYPES[dtype as SafetensorsDtype];
  if (end < begin || end - begin !== bytes) {
    fail(`tensor "${name}" of shape [${(shape as number[]).join(", ")}] ${dtype} needs ${bytes} bytes, but its data_offsets [${begin}, ${end}] span ${end - begin}`);
  }
  return { name, dtype: dtype as SafetensorsDtype, shape: shape as number[], begin, end };
}

/** Little-endian bytes of `dtype` as float32 values. */
export function toFloat32(bytes: Uint8Array, dtype: SafetensorsDtype): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.byteLength / SAFETENSORS_DTYPES[dtype];
  const out = new Float32Array(n);
  if (dtype === "F32") {
    // A byte copy, not number by number: NaN payloads survive, so f32 in is f32 out bit for bit.
    new Uint8Array(out.buffer).set(bytes);
  } else if (dtype === "BF16") {
    // bfloat16 is the top half of a float32.
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) bits[i] = view.getUint16(i * 2, true) << 16;
  } else {
    for (let i = 0; i < n; i++) out[i] = f16ToNumber(view.getUint16(i * 2, true));
  }
  return out;
}

/** IEEE 754 binary16 bits to their value (exact in float32). */
export function f16ToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? Number.NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}
