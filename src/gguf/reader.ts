/**
 * Reads a GGUF file's layout: the header, the metadata key-value pairs and the tensor infos, as
 * llama.cpp's gguf.cpp would, checking every count, length, type and offset against the file
 * before trusting it. The model checker, the adapter importer and `friend adapter inspect` all
 * read GGUF files through here.
 *
 * node-llama-cpp reads a GGUF's metadata in JavaScript before llama.cpp does, and reads zeros past
 * the end of the file: a 24-byte file whose header claims 2^48 tensors and 2^32 keys kept it busy
 * for minutes (issue 10). So the whole layout is walked, bounded by the file's size.
 */
import { constants } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";

const GGUF_MAGIC = "GGUF";
const HEADER_BYTES = 24; // magic, u32 version, u64 tensor count, u64 key count
/** The newest GGUF version llama.cpp reads; version 1 is no longer supported. */
const NEWEST_VERSION = 3;
const DEFAULT_ALIGNMENT = 32;
/** llama.cpp's GGML_MAX_NAME (names must be shorter) and GGML_MAX_DIMS. */
const MAX_TENSOR_NAME = 64;
const MAX_DIMS = 4;
/**
 * Far above any real file (Llama-2-7B: 291 tensors, about 25 keys, 1 MB of metadata with its
 * tokenizer), and low enough that llama.cpp's quadratic duplicate-name checks stay quick.
 */
const MAX_KEYS = 65_536;
const MAX_TENSORS = 65_536;
const MAX_METADATA_BYTES = 64 * 1024 * 1024;
const MAX_KEY_BYTES = 65_536;
/** The smallest possible key-value pair (u64 key length, a 1-byte key, u32 type, a 1-byte value) and tensor info (u64 name length, u32 dims, u32 type, u64 offset). */
const MIN_KEY_VALUE_BYTES = 8 + 1 + 4 + 1;
const MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8;
/** The first read; grown fourfold until the metadata fits (most files need one read). */
const FIRST_READ_BYTES = 1024 * 1024;
/** Arrays up to this long are decoded (tags, small lists); longer ones (a tokenizer's 32,000 tokens) are only skipped. */
const MAX_DECODED_ARRAY = 4096;

/** GGUF value types (gguf.h) and their sizes; strings and arrays have none. */
export const GGUF_VALUE_TYPES = ["u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"] as const;
export type GgufValueType = (typeof GGUF_VALUE_TYPES)[number];
const VALUE_SIZE: Record<GgufValueType, number> = { u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, bool: 1, string: 8, array: 0, u64: 8, i64: 8, f64: 8 };
const STRING = GGUF_VALUE_TYPES.indexOf("string");
const ARRAY = GGUF_VALUE_TYPES.indexOf("array");
const U32 = GGUF_VALUE_TYPES.indexOf("u32");

/** ggml tensor types this llama.cpp reads: [name, bytes per block, elements per block] (ggml.h, ggml-common.h). Gaps are removed types. */
export const GGML_TENSOR_TYPES: ReadonlyMap<number, readonly [string, number, number]> = new Map([
  [0, ["F32", 4, 1]], [1, ["F16", 2, 1]], [2, ["Q4_0", 18, 32]], [3, ["Q4_1", 20, 32]],
  [6, ["Q5_0", 22, 32]], [7, ["Q5_1", 24, 32]], [8, ["Q8_0", 34, 32]], [9, ["Q8_1", 36, 32]],
  [10, ["Q2_K", 84, 256]], [11, ["Q3_K", 110, 256]], [12, ["Q4_K", 144, 256]], [13, ["Q5_K", 176, 256]],
  [14, ["Q6_K", 210, 256]], [15, ["Q8_K", 292, 256]], [16, ["IQ2_XXS", 66, 256]], [17, ["IQ2_XS", 74, 256]],
  [18, ["IQ3_XXS", 98, 256]], [19, ["IQ1_S", 50, 256]], [20, ["IQ4_NL", 18, 32]], [21, ["IQ3_S", 110, 256]],
  [22, ["IQ2_S", 82, 256]], [23, ["IQ4_XS", 136, 256]], [24, ["I8", 1, 1]], [25, ["I16", 2, 1]],
  [26, ["I32", 4, 1]], [27, ["I64", 8, 1]], [28, ["F64", 8, 1]], [29, ["IQ1_M", 56, 256]],
  [30, ["BF16", 2, 1]], [34, ["TQ1_0", 54, 256]], [35, ["TQ2_0", 66, 256]], [39, ["MXFP4", 17, 32]],
  [40, ["NVFP4", 36, 64]], [41, ["Q1_0", 18, 128]], [42, ["Q2_0", 18, 64]],
]);

export type GgufScalar = number | bigint | boolean | string;

/** One metadata value. Arrays longer than MAX_DECODED_ARRAY keep only their type and length. */
export type GgufKv =
  | { type: Exclude<GgufValueType, "array">; value: GgufScalar }
  | { type: "array"; itemType: Exclude<GgufValueType, "array">; length: number; value: GgufScalar[] | undefined };

export interface GgufTensorInfo {
  name: string;
  /** Fastest dimension first (the reverse of a PyTorch shape). */
  ne: number[];
  /** ggml type id and name ("F32", "Q8_0", …). */
  type: number;
  typeName: string;
  /** Byte offset from the start of the tensor data, and size in bytes. */
  offset: number;
  bytes: number;
}

/** What a GGUF file holds, short of the tensor data itself. */
export interface GgufLayout {
  version: number;
  tensorCount: number;
  keyCount: number;
  /** `general.architecture`, e.g. "llama". */
  architecture: string;
  /** `general.type`: "model", "adapter", or undefined in older files. */
  type: string | undefined;
  /** Bytes from the start of the file to the end of the tensor infos. */
  metadataBytes: number;
  /** Where the tensor data starts in the file. */
  dataStart: number;
  /** In file order. */
  kvs: Map<string, GgufKv>;
  /** In file order. */
  tensors: GgufTensorInfo[];
}

/** The file does not start like a GGUF file at all. */
export class NotGgufError extends Error {}
/** The file starts like GGUF, but its layout is broken; the message says where. */
export class DamagedGgufError extends Error {}
/** The path is a directory or a device, not a regular file. */
export class NotAFileError extends Error {}
/** The walk ran past the bytes read so far; read more and start again. */
class NeedMoreBytes extends Error {}

/**
 * Opens the regular file `path` to read, with its size; throws NotAFileError for anything else (a
 * directory, a device, a named pipe). It never waits: a named pipe opened the usual way blocks
 * until a writer comes (for ever, holding one of libuv's few threads); opened non-blocking it opens
 * at once and is refused. For a regular file the flag changes nothing.
 */
export async function openRegularFile(path: string): Promise<{ file: FileHandle; size: number }> {
  const file = await open(path, constants.O_RDONLY | constants.O_NONBLOCK).catch((err: NodeJS.ErrnoException) => {
    throw err.code === "EISDIR" ? new NotAFileError(`${path} is not a file`) : err;
  });
  const stat = await file.stat().catch(async (err: unknown) => {
    await file.close();
    throw err;
  });
  if (!stat.isFile()) {
    await file.close();
    throw new NotAFileError(`${path} is not a file`);
  }
  return { file, size: stat.size };
}

/** Reads the layout of the GGUF file at `path`; throws NotGgufError or DamagedGgufError (or a file system error). */
export async function readGgufFile(path: string): Promise<GgufLayout> {
  const { file, size } = await openRegularFile(path);
  try {
    return await readGgufLayout(file, size);
  } finally {
    await file.close();
  }
}

/** Reads as much of the file as its metadata needs, then walks the layout. */
export async function readGgufLayout(file: FileHandle, fileSize: number): Promise<GgufLayout> {
  for (let length = Math.min(fileSize, FIRST_READ_BYTES); ; length = Math.min(fileSize, length * 4, MAX_METADATA_BYTES)) {
    const bytes = Buffer.alloc(length);
    const { bytesRead } = await file.read(bytes, 0, length, 0);
    if (bytesRead < length) throw new DamagedGgufError(`it is shorter than its size says (${bytesRead} of ${fileSize} bytes readable; still being written?)`);
    try {
      return walkGgufLayout(bytes, fileSize);
    } catch (err) {
      if (!(err instanceof NeedMoreBytes)) throw err;
      if (length >= MAX_METADATA_BYTES) throw new DamagedGgufError(`its metadata runs past ${MAX_METADATA_BYTES / 1024 / 1024} MiB, far more than any model has`);
    }
  }
}

/** A tensor's raw bytes, as stored (any ggml type). */
export async function readGgufTensorBytes(path: string, layout: GgufLayout, tensor: GgufTensorInfo): Promise<Buffer> {
  const { file } = await openRegularFile(path);
  try {
    const bytes = Buffer.alloc(tensor.bytes);
    await file.read(bytes, 0, tensor.bytes, layout.dataStart + tensor.offset);
    return bytes;
  } finally {
    await file.close();
  }
}

/** A metadata value as a number, when it is one (any numeric type). */
export function kvNumber(kvs: ReadonlyMap<string, GgufKv>, key: string): number | undefined {
  const kv = kvs.get(key);
  if (!kv || kv.type === "array" || kv.type === "string" || kv.type === "bool") return undefined;
  return Number(kv.value);
}

export function kvString(kvs: ReadonlyMap<string, GgufKv>, key: string): string | undefined {
  const kv = kvs.get(key);
  return kv?.type === "string" ? (kv.value as string) : undefined;
}
/**
 * Walks a GGUF layout from its first bytes (`bytes`, a prefix of a file of `fileSize` bytes), as
 * llama.cpp's gguf.cpp would, and returns what it found.
 */
function walkGgufLayout(bytes: Buffer, fileSize: number): GgufLayout {
  let pos = 0;
  const take = (n: number, what: string): number => {
    const at = pos;
    if (n > fileSize - at) throw new DamagedGgufError(`the file ends at byte ${fileSize}, inside ${what} (an interrupted download or copy?)`);
    if (n > bytes.length - at) throw new NeedMoreBytes();
    pos += n;
    return at;
  };
  const u32 = (what: string): number => bytes.readUInt32LE(take(4, what));
  const u64 = (what: string): bigint => bytes.readBigUInt64LE(take(8, what));
  /** A length or count that must fit in the rest of the file at `unit` bytes each. */
  const count = (what: string, unit: number): number => {
    const n = u64(what);
    if (n * BigInt(unit) > BigInt(fileSize - pos)) {
      throw new DamagedGgufError(`${what} is ${n}, which needs ${unit === 1 ? "" : "at least "}${n * BigInt(unit)} bytes, but only ${fileSize - pos} remain`);
    }
    return Number(n);
  };
  /** The hot loop of a tokenizer's token list (tens of thousands of strings): no strings built, no bigints. */
  const skipStrings = (items: number, array: string): void => {
    const item = `an item of ${array}`;
    for (let j = 0; j < items; j++) {
      const at = take(8, item);
      const length = bytes.readUInt32LE(at) + bytes.readUInt32LE(at + 4) * 2 ** 32;
      if (length > fileSize - pos) throw new DamagedGgufError(`item ${j} of ${array} is ${length} bytes long, but only ${fileSize - pos} remain`);
      take(length, item);
    }
  };
  const text = (what: string, maxBytes: number): string => {
    const n = count(`the length of ${what}`, 1);
    if (n > maxBytes) throw new DamagedGgufError(`${what} is ${n} bytes long (at most ${maxBytes})`);
    return bytes.toString("utf8", take(n, what), pos);
  };

  // The header.
  if (fileSize < GGUF_MAGIC.length || bytes.toString("latin1", 0, 4) !== GGUF_MAGIC) {
    const start = bytes.subarray(0, Math.min(4, bytes.length));
    throw new NotGgufError(start.length === 0 ? "it is empty" : `it starts with bytes ${start.toString("hex")}, not "GGUF"`);
  }
  take(4, "the header");
  const version = u32("the header");
  if (version === 0) throw new DamagedGgufError("its GGUF version is 0");
  if ((version & 0xffff) === 0) throw new DamagedGgufError(`its GGUF version reads as ${version}: a big-endian file, which this machine cannot use`);
  if (version === 1) throw new DamagedGgufError("it is GGUF version 1, which llama.cpp no longer reads; convert the model again");
  if (version > NEWEST_VERSION) throw new DamagedGgufError(`it is GGUF version ${version}, newer than this llama.cpp reads (up to ${NEWEST_VERSION})`);
  const tensorCount = u64("the header");
  const keyCount = u64("the header");
  if (tensorCount > BigInt(MAX_TENSORS) || keyCount > BigInt(MAX_KEYS)) {
    throw new DamagedGgufError(`its header claims ${tensorCount} tensors and ${keyCount} metadata keys, far more than any model has`);
  }
  const needed = keyCount * BigInt(MIN_KEY_VALUE_BYTES) + tensorCount * BigInt(MIN_TENSOR_INFO_BYTES);
  if (needed > BigInt(fileSize - HEADER_BYTES)) {
    throw new DamagedGgufError(`its header claims ${tensorCount} tensors and ${keyCount} metadata keys, which need at least ${needed} bytes, but the file has only ${fileSize - HEADER_BYTES} after its header`);
  }

  // The metadata key-value pairs.
  const kvs = new Map<string, GgufKv>();
  let alignment = DEFAULT_ALIGNMENT;
  const scalarAt = (typeIndex: number, at: number): GgufScalar => {
    switch (GGUF_VALUE_TYPES[typeIndex]) {
      case "u8": return bytes.readUInt8(at);
      case "i8": return bytes.readInt8(at);
      case "u16": return bytes.readUInt16LE(at);
      case "i16": return bytes.readInt16LE(at);
      case "u32": return bytes.readUInt32LE(at);
      case "i32": return bytes.readInt32LE(at);
      case "f32": return bytes.readFloatLE(at);
      case "bool": return bytes.readUInt8(at) !== 0;
      case "u64": return bytes.readBigUInt64LE(at);
      case "i64": return bytes.readBigInt64LE(at);
      default: return bytes.readDoubleLE(at);
    }
  };
  for (let i = 0; i < Number(keyCount); i++) {
    const key = text(`the name of metadata key ${i}`, MAX_KEY_BYTES);
    if (key === "") throw new DamagedGgufError(`metadata key ${i} has an empty name`);
    if (kvs.has(key)) throw new DamagedGgufError(`metadata key "${key}" appears twice`);
    const valueType = u32(`the type of "${key}"`);
    if (valueType === ARRAY) {
      const itemType = u32(`the item type of "${key}"`);
      if (itemType >= GGUF_VALUE_TYPES.length || itemType === ARRAY) throw new DamagedGgufError(`metadata key "${key}" is an array of unknown type ${itemType}`);
      const itemSize = VALUE_SIZE[GGUF_VALUE_TYPES[itemType]!];
      const items = count(`the length of "${key}"`, itemSize);
      let values: GgufScalar[] | undefined;
      if (items > MAX_DECODED_ARRAY) {
        if (itemType === STRING) skipStrings(items, `"${key}"`);
        else take(items * itemSize, `the value of "${key}"`);
      } else if (itemType === STRING) {
        values = [];
        for (let j = 0; j < items; j++) values.push(text(`item ${j} of "${key}"`, fileSize));
      } else {
        const at = take(items * itemSize, `the value of "${key}"`);
        values = Array.from({ length: items }, (_, j) => scalarAt(itemType, at + j * itemSize));
      }
      kvs.set(key, { type: "array", itemType: GGUF_VALUE_TYPES[itemType] as Exclude<GgufValueType, "array">, length: items, value: values });
    } else if (valueType === STRING) {
      const value = count(`the length of "${key}"`, 1);
      const at = take(value, `the value of "${key}"`);
      kvs.set(key, { type: "string", value: bytes.toString("utf8", at, pos) });
    } else if (valueType < GGUF_VALUE_TYPES.length) {
      const at = take(VALUE_SIZE[GGUF_VALUE_TYPES[valueType]!], `the value of "${key}"`);
      kvs.set(key, { type: GGUF_VALUE_TYPES[valueType] as Exclude<GgufValueType, "array">, value: scalarAt(valueType, at) });
      if (key === "general.alignment") {
        if (valueType !== U32) throw new DamagedGgufError(`general.alignment has type ${GGUF_VALUE_TYPES[valueType]}, not u32`);
        alignment = bytes.readUInt32LE(at);
        if (alignment === 0 || (alignment & (alignment - 1)) !== 0) throw new DamagedGgufError(`general.alignment is ${alignment}, not a power of 2`);
      }
    } else {
      throw new DamagedGgufError(`metadata key "${key}" has unknown type ${valueType}`);
    }
  }
  // The two strings llama.cpp and node-llama-cpp need before anything else.
  const architecture = kvString(kvs, "general.architecture");
  const type = kvString(kvs, "general.type");

  // The tensor infos: names, shapes, types and data offsets, which must follow one another.
  const tensors: GgufTensorInfo[] = [];
  const names = new Set<string>();
  let dataBytes = 0n;
  let dataEnd = 0n;
  for (let i = 0; i < Number(tensorCount); i++) {
    const name = text(`the name of tensor ${i}`, MAX_TENSOR_NAME - 1);
    if (names.has(name)) throw new DamagedGgufError(`tensor "${name}" appears twice`);
    names.add(name);
    const dims = u32(`the shape of tensor "${name}"`);
    if (dims > MAX_DIMS) throw new DamagedGgufError(`tensor "${name}" has ${dims} dimensions (at most ${MAX_DIMS})`);
    const shape: bigint[] = [];
    for (let d = 0; d < dims; d++) shape.push(bytes.readBigInt64LE(take(8, `the shape of tensor "${name}"`)));
    if (shape.some((n) => n < 0n)) throw new DamagedGgufError(`tensor "${name}" has a negative dimension`);
    const elements = shape.reduce((a, b) => a * b, 1n);
    if (elements >= 2n ** 63n) throw new DamagedGgufError(`tensor "${name}" has too many elements`);
    const typeId = u32(`the type of tensor "${name}"`);
    const tensorType = GGML_TENSOR_TYPES.get(typeId);
    if (!tensorType) throw new DamagedGgufError(`tensor "${name}" has unknown ggml type ${typeId}`);
    const [typeName, blockBytes, blockElements] = tensorType;
    if ((shape[0] ?? 1n) % BigInt(blockElements) !== 0n) {
      throw new DamagedGgufError(`tensor "${name}" of type ${typeName} has rows of ${shape[0] ?? 1n} elements, not a multiple of ${blockElements}`);
    }
    const offset = u64(`the offset of tensor "${name}"`);
    if (offset !== dataBytes) throw new DamagedGgufError(`tensor "${name}" says its data is at offset ${offset}, but the previous tensors end at ${dataBytes}`);
    const size = (elements / BigInt(blockElements)) * BigInt(blockBytes);
    dataEnd = offset + size;
    dataBytes = padTo(dataEnd, BigInt(alignment));
    tensors.push({ name, ne: shape.map(Number), type: typeId, typeName, offset: Number(offset), bytes: Number(size) });
  }
  const metadataBytes = pos;
  if (architecture === undefined) throw new DamagedGgufError("it has no general.architecture string, so llama.cpp cannot tell what model it is");

  // The tensor data, aligned after the infos; the last tensor needs no padding after it.
  const dataStart = tensorCount > 0n ? padTo(BigInt(pos), BigInt(alignment)) : BigInt(pos);
  if (dataStart + dataEnd > BigInt(fileSize)) {
    throw new DamagedGgufError(`its tensors need ${dataStart + dataEnd} bytes, but the file has only ${fileSize} (an interrupted download or copy?)`);
  }
  return { version, tensorCount: Number(tensorCount), keyCount: Number(keyCount), architecture, type, metadataBytes, dataStart: Number(dataStart), kvs, tensors };
}

function padTo(n: bigint, alignment: bigint): bigint {
  return ((n + alignment - 1n) / alignment) * alignment;
}

