/**
 * A small GGUF v3 writer: the adapters `friend adapter import` makes, and the models and adapters
 * that the local-backend tests and the benchmark load through node-llama-cpp (real llama.cpp
 * inference, no downloaded weights).
 *
 * Layout (llama.cpp's gguf.cpp): "GGUF", u32 version 3, u64 tensor count, u64 KV count, the KVs,
 * the tensor infos, then the tensor data, each tensor aligned to `general.alignment` (32).
 * Tensor shapes are written as llama.cpp's `ne`, fastest dimension first: a PyTorch `[out, in]`
 * weight is `ne = [in, out]` with the same row-major bytes.
 *
 * Tensor data is written in chunks straight to the file, so a 2 GB benchmark model never has to
 * sit in memory at once.
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { open } from "node:fs/promises";

export const GGUF_MAGIC = "GGUF";
export const GGUF_VERSION = 3;
export const GGUF_ALIGNMENT = 32;

/** GGUF metadata value types (gguf.h `gguf_type`). Types are checked strictly on load: a u32 is not an i32. */
export const GgufType = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
} as const;
export type GgufScalarType = Exclude<keyof typeof GgufType, "array">;

/** ggml tensor types this writer can encode. */
export const GgmlType = { f32: 0, f16: 1, q8_0: 8, bf16: 30 } as const;
export type GgmlTypeName = keyof typeof GgmlType;

type Scalar = number | bigint | boolean | string;

interface Kv {
  key: string;
  type: GgufScalarType;
  value: Scalar | readonly Scalar[];
  array: boolean;
}

/**
 * Tensor contents: a ready array (small tensors), a function that fills `chunk` with the elements
 * starting at flat index `start` (large tensors, generated as they are written), or `load`, called
 * just before the tensor is written (tensors read from another file one at a time; `writeAsync` only).
 */
export type TensorData = Float32Array | ((chunk: Float32Array, start: number) => void) | { load(): Promise<Float32Array> };

interface Tensor {
  name: string;
  ne: readonly number[];
  type: GgmlTypeName;
  data: TensorData;
  elements: number;
  offset: number;
}

const CHUNK_ELEMENTS = 1 << 20;

export class GgufWriter {
  private readonly kvs: Kv[] = [];
  private readonly tensors: Tensor[] = [];
  private dataSize = 0;

  u8(key: string, value: number): this { return this.kv(key, "u8", value); }
  i8(key: string, value: number): this { return this.kv(key, "i8", value); }
  u16(key: string, value: number): this { return this.kv(key, "u16", value); }
  i16(key: string, value: number): this { return this.kv(key, "i16", value); }
  u32(key: string, value: number): this { return this.kv(key, "u32", value); }
  i32(key: string, value: number): this { return this.kv(key, "i32", value); }
  u64(key: string, value: number | bigint): this { return this.kv(key, "u64", value); }
  i64(key: string, value: number | bigint): this { return this.kv(key, "i64", value); }
  f32(key: string, value: number): this { return this.kv(key, "f32", value); }
  f64(key: string, value: number): this { return this.kv(key, "f64", value); }
  bool(key: string, value: boolean): this { return this.kv(key, "bool", value); }
  string(key: string, value: string): this { return this.kv(key, "string", value); }

  /** An array KV; every element has `itemType` (GGUF arrays are homogeneous). */
  array(key: string, itemType: GgufScalarType, values: readonly Scalar[]): this {
    this.kvs.push({ key, type: itemType, value: values, array: true });
    return this;
  }

  /** Adds a tensor; `ne` is fastest-dimension-first (the reverse of a PyTorch shape). */
  tensor(name: string, ne: readonly number[], type: GgmlTypeName, data: TensorData): this {
    const elements = ne.reduce((a, b) => a * b, 1);
    if (data instanceof Float32Array && data.length !== elements) {
      throw new Error(`tensor ${name}: ${data.length} values for shape [${ne.join(", ")}] (${elements})`);
    }
    if (type === "q8_0" && ne[0]! % Q8_0_BLOCK !== 0) {
      throw new Error(`tensor ${name}: q8_0 rows must be a multiple of ${Q8_0_BLOCK} elements, got ${ne[0]}`);
    }
    this.dataSize = align(this.dataSize);
    this.tensors.push({ name, ne, type, data, elements, offset: this.dataSize });
    this.dataSize += tensorBytes(type, elements);
    return this;
  }

  /** Writes the file. Returns its size in bytes. */
  write(path: string): number {
    const fd = openSync(path, "w");
    try {
      const head = this.header();
      writeSync(fd, head);
      let written = head.length;
      for (const t of this.tensors) {
        written += pad(fd, written, align(written));
        written += writeTensorData(fd, t);
      }
      return written;
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Writes the file without blocking the event loop, loading `load` tensors one at a time, so a
   * large adapter is never in memory whole. Returns its size in bytes.
   */
  async writeAsync(path: string): Promise<number> {
    const file = await open(path, "w");
    try {
      const head = this.header();
      await file.write(head);
      let written = head.length;
      for (const t of this.tensors) {
        const padding = align(written) - written;
        if (padding > 0) await file.write(Buffer.alloc(padding));
        written += padding;
        const values = "load" in t.data ? await t.data.load() : undefined;
        if (values && values.length !== t.elements) throw new Error(`tensor ${t.name}: ${values.length} values for shape [${t.ne.join(", ")}] (${t.elements})`);
        for (const bytes of tensorChunks(values ? { ...t, data: values } : t)) {
          await file.write(bytes);
          written += bytes.length;
        }
      }
      return written;
    } finally {
      await file.close();
    }
  }

  private kv(key: string, type: GgufScalarType, value: Scalar): this {
    this.kvs.push({ key, type, value, array: false });
    return this;
  }

  /** Everything before the tensor data: header, KVs, tensor infos, padding to the alignment. */
  private header(): Buffer {
    const out = new ByteSink();
    out.raw(Buffer.from(GGUF_MAGIC, "ascii"));
    out.u32(GGUF_VERSION);
    out.u64(this.tensors.length);
    out.u64(this.kvs.length);
    for (const kv of this.kvs) {
      out.string(kv.key);
      if (kv.array) {
        const values = kv.value as readonly Scalar[];
        out.u32(GgufType.array);
        out.u32(GgufType[kv.type]);
        out.u64(values.length);
        for (const v of values) out.scalar(kv.type, v);
      } else {
        out.u32(GgufType[kv.type]);
        out.scalar(kv.type, kv.value as Scalar);
      }
    }
    for (const t of this.tensors) {
      out.string(t.name);
      out.u32(t.ne.length);
      for (const n of t.ne) out.u64(n);
      out.u32(GgmlType[t.type]);
      out.u64(t.offset);
    }
    const bytes = out.bytes();
    return Buffer.concat([bytes, Buffer.alloc(align(bytes.length) - bytes.length)]);
  }
}

function align(n: number): number {
  return Math.ceil(n / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;
}

/** Elements per Q8_0 block: one f16 scale and 32 int8 values (ggml's `block_q8_0`, 34 bytes). */
export const Q8_0_BLOCK = 32;
const Q8_0_BLOCK_BYTES = 2 + Q8_0_BLOCK;

function tensorBytes(type: GgmlTypeName, elements: number): number {
  if (type === "q8_0") return (elements / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES;
  return elements * (type === "f32" ? 4 : 2);
}

function pad(fd: number, from: number, to: number): number {
  if (to > from) writeSync(fd, Buffer.alloc(to - from));
  return to - from;
}

function writeTensorData(fd: number, t: Tensor): number {
  let written = 0;
  for (const bytes of tensorChunks(t)) {
    writeSync(fd, bytes);
    written += bytes.length;
  }
  return written;
}

/** A tensor's bytes in its ggml type, a chunk at a time. */
function* tensorChunks(t: Tensor): Generator<Uint8Array> {
  const { data } = t;
  if (!(data instanceof Float32Array) && typeof data !== "function") throw new Error(`tensor ${t.name} is loaded on demand: write it with writeAsync`);
  for (let start = 0; start < t.elements; start += CHUNK_ELEMENTS) {
    const count = Math.min(CHUNK_ELEMENTS, t.elements - start);
    let chunk: Float32Array;
    if (data instanceof Float32Array) {
      chunk = data.subarray(start, start + count);
    } else {
      chunk = new Float32Array(count);
      data(chunk, start);
    }
    yield encodeTensor(t.type, chunk);
  }
}

/** float32 values as the bytes of a ggml type. */
export function encodeTensor(type: GgmlTypeName, values: Float32Array): Uint8Array {
  switch (type) {
    case "f32":
      return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    case "f16":
      return toF16Bytes(values);
    case "bf16":
      return toBf16Bytes(values);
    case "q8_0":
      return toQ8_0Bytes(values);
  }
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE 754 binary16 bits of a float, rounded to nearest even. */
export function f16Bits(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf / nan
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow → inf
  if (e <= 0) {
    if (e < -10) return sign; // underflow → ±0
    mant |= 0x800000; // subnormal: make the implicit bit explicit, then shift into place
    const shift = 14 - e;
    let half = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && half & 1)) half++; // may carry into the exponent, which is right
  return sign | half;
}

/**
 * bfloat16 bits of each value, rounded to nearest even; a NaN stays a (quiet) NaN. The same
 * rounding as gguf-py's and ggml's `ggml_compute_fp32_to_bf16`.
 */
function toBf16Bytes(values: Float32Array): Uint8Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const x = bits[i]!;
    out[i] = (x & 0x7fffffff) > 0x7f800000 ? ((x >>> 16) & 0xffff) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return new Uint8Array(out.buffer);
}

function toF16Bytes(values: Float32Array): Uint8Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f16Bits(values[i]!);
  return new Uint8Array(out.buffer);
}

/**
 * ggml's reference Q8_0 quantizer (`quantize_row_q8_0_ref`): per block of 32, the scale is
 * max|x|/127 stored as f16, and each value is round(x/scale) as int8. `values.length` must be a
 * multiple of 32 (chunks are, and rows are checked in `tensor`).
 */
export function toQ8_0Bytes(values: Float32Array): Uint8Array {
  const blocks = values.length / Q8_0_BLOCK;
  const out = new Uint8Array(blocks * Q8_0_BLOCK_BYTES);
  const view = new DataView(out.buffer);
  for (let b = 0; b < blocks; b++) {
    const base = b * Q8_0_BLOCK;
    let amax = 0;
    for (let i = 0; i < Q8_0_BLOCK; i++) amax = Math.max(amax, Math.abs(values[base + i]!));
    const d = amax / 127;
    const id = d ? 1 / d : 0;
    const at = b * Q8_0_BLOCK_BYTES;
    view.setUint16(at, f16Bits(d), true);
    for (let i = 0; i < Q8_0_BLOCK; i++) view.setInt8(at + 2 + i, roundHalfAway(values[base + i]! * id));
  }
  return out;
}

/** C's roundf: halves away from zero (Math.round rounds -0.5 up to 0). */
function roundHalfAway(x: number): number {
  return Math.sign(x) * Math.round(Math.abs(x));
}

/** Little-endian byte builder for the header part of the file. */
class ByteSink {
  private readonly parts: Buffer[] = [];

  raw(b: Buffer): void {
    this.parts.push(b);
  }
  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
  u32(n: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    this.raw(b);
  }
  u64(n: number | bigint): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(n));
    this.raw(b);
  }
  string(s: string): void {
    const b = Buffer.from(s, "utf8");
    this.u64(b.length);
    this.raw(b);
  }
  scalar(type: GgufScalarType, v: Scalar): void {
    const num = (): number => {
      if (typeof v !== "number") throw new Error(`GGUF ${type} value must be a number, got ${typeof v}`);
      return v;
    };
    let b: Buffer;
    switch (type) {
      case "u8": b = Buffer.alloc(1); b.writeUInt8(num()); break;
      case "i8": b = Buffer.alloc(1); b.writeInt8(num()); break;
      case "u16": b = Buffer.alloc(2); b.writeUInt16LE(num()); break;
      case "i16": b = Buffer.alloc(2); b.writeInt16LE(num()); break;
      case "u32": b = Buffer.alloc(4); b.writeUInt32LE(num()); break;
      case "i32": b = Buffer.alloc(4); b.writeInt32LE(num()); break;
      case "f32": b = Buffer.alloc(4); b.writeFloatLE(num()); break;
      case "f64": b = Buffer.alloc(8); b.writeDoubleLE(num()); break;
      case "u64": b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v as number | bigint)); break;
      case "i64": b = Buffer.alloc(8); b.writeBigInt64LE(BigInt(v as number | bigint)); break;
      case "bool": b = Buffer.from([v ? 1 : 0]); break;
      case "string": this.string(String(v)); return;
    }
    this.raw(b);
  }
}
