/**
 * Writes safetensors files for the importer's tests: an 8-byte little-endian header length, the
 * JSON header, then each tensor's little-endian bytes, in the order given. `corrupt` lets a test
 * lie in the header or cut the file.
 */
import { writeFileSync } from "node:fs";
import { f16Bits } from "../../../src/gguf/writer.ts";
import type { SafetensorsDtype } from "../../../src/adapters/safetensors.ts";

export interface TensorToWrite {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  values: Float32Array;
}

export interface Corruption {
  /** Replaces a tensor's data_offsets in the header. */
  offsets?: Record<string, [number, number]>;
  /** Keeps only this many bytes of the finished file. */
  truncateTo?: number;
  /** Replaces the header text (after the length). */
  headerText?: string;
}

export function safetensorsBytes(tensors: readonly TensorToWrite[], metadata: Record<string, string> = { format: "pt" }, corrupt: Corruption = {}): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata };
  const datas: Buffer[] = [];
  let offset = 0;
  for (const t of tensors) {
    const data = encode(t.values, t.dtype);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: corrupt.offsets?.[t.name] ?? [offset, offset + data.length] };
    datas.push(data);
    offset += data.length;
  }
  let text = corrupt.headerText ?? JSON.stringify(header);
  // The format pads the header with spaces to a multiple of 8, as the Rust writer does.
  text += " ".repeat((8 - (Buffer.byteLength(text) % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(Buffer.byteLength(text)));
  const bytes = Buffer.concat([length, Buffer.from(text, "utf8"), ...datas]);
  return corrupt.truncateTo === undefined ? bytes : bytes.subarray(0, corrupt.truncateTo);
}

export function writeSafetensors(path: string, tensors: readonly TensorToWrite[], corrupt: Corruption = {}): void {
  writeFileSync(path, safetensorsBytes(tensors, { format: "pt" }, corrupt));
}

function encode(values: Float32Array, dtype: SafetensorsDtype): Buffer {
  const out = Buffer.alloc(values.length * (dtype === "F32" ? 4 : 2));
  for (let i = 0; i < values.length; i++) {
    if (dtype === "F32") out.writeFloatLE(values[i]!, i * 4);
    else if (dtype === "F16") out.writeUInt16LE(f16Bits(values[i]!), i * 2);
    else out.writeUInt16LE(bf16Truncated(values[i]!), i * 2);
  }
  return out;
}

/** The top half of a float32: exact for values that are already bfloat16. */
function bf16Truncated(value: number): number {
  const b = Buffer.alloc(4);
  b.writeFloatLE(value);
  return b.readUInt32LE() >>> 16;
}
