/**
 * A byte-level GGUF builder for the file checker's tests: it writes exactly what it is told,
 * including layouts that GgufWriter would never produce (wrong counts, unknown types, overlaps).
 */
export class RawGguf {
  private readonly parts: Buffer[] = [];

  /** "GGUF", the version, the tensor count and the key count. */
  header(counts: { tensors: number | bigint; keys: number | bigint; version?: number; magic?: string }): this {
    return this.text(counts.magic ?? "GGUF").u32(counts.version ?? 3).u64(counts.tensors).u64(counts.keys);
  }

  text(s: string): this {
    this.parts.push(Buffer.from(s, "latin1"));
    return this;
  }
  u32(n: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    this.parts.push(b);
    return this;
  }
  u64(n: number | bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(n));
    this.parts.push(b);
    return this;
  }
  i64(n: number | bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigInt64LE(BigInt(n));
    this.parts.push(b);
    return this;
  }
  /** A GGUF string: u64 length, then the bytes. */
  string(s: string): this {
    return this.u64(Buffer.byteLength(s)).text(s);
  }
  zeros(n: number): this {
    this.parts.push(Buffer.alloc(n));
    return this;
  }

  /** A string key-value pair (type 8). */
  kvString(key: string, value: string): this {
    return this.string(key).u32(8).string(value);
  }
  /** A u32 key-value pair (type 4), or another 4-byte type. */
  kvU32(key: string, value: number, type = 4): this {
    return this.string(key).u32(type).u32(value);
  }
  /** A tensor info: name, dimension count, `ne`, ggml type, data offset. */
  tensor(name: string, ne: readonly (number | bigint)[], type: number, offset: number | bigint): this {
    this.string(name).u32(ne.length);
    for (const n of ne) this.i64(n);
    return this.u32(type).u64(offset);
  }
  /** Zeros up to the next multiple of `alignment` (the start of the tensor data). */
  align(alignment = 32): this {
    const length = this.length;
    return this.zeros((alignment - (length % alignment)) % alignment);
  }

  get length(): number {
    return this.parts.reduce((n, b) => n + b.length, 0);
  }
  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** The smallest well-formed layout: one architecture key and one F32 tensor of 4 elements. */
export function minimalGguf(options: { type?: string } = {}): RawGguf {
  const gguf = new RawGguf().header({ tensors: 1, keys: options.type ? 2 : 1 }).kvString("general.architecture", "llama");
  if (options.type) gguf.kvString("general.type", options.type);
  return gguf.tensor("t", [4], 0, 0).align().zeros(16);
}
