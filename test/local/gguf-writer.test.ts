/** The test GGUF writer, checked against node-llama-cpp's own GGUF reader. */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readGgufFileInfo } from "node-llama-cpp";
import { afterAll, describe, expect, it } from "vitest";
import { f16Bits, GgufWriter } from "../../src/gguf/writer.ts";

const dir = mkdtempSync(join(tmpdir(), "friend-gguf-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("f16Bits", () => {
  it.each([
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [0.1, 0x2e66],
    [65504, 0x7bff],
    [65520, 0x7c00], // rounds up past the largest half: infinity
    [Infinity, 0x7c00],
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -26, 0x0000], // underflow
    [1 + 2 ** -11, 0x3c00], // halfway rounds to even
    [1 + 3 * 2 ** -11, 0x3c02],
  ])("%d → %s", (value, bits) => {
    expect(f16Bits(value)).toBe(bits);
  });

  it("NaN stays NaN", () => {
    const bits = f16Bits(Number.NaN);
    expect(bits & 0x7c00).toBe(0x7c00);
    expect(bits & 0x3ff).not.toBe(0);
  });
});

describe("GgufWriter", () => {
  it("writes metadata of every type and aligned tensors that node-llama-cpp reads back", async () => {
    const path = join(dir, "all-types.gguf");
    const f16 = new Float32Array([1, -2, 0.5, 3]);
    new GgufWriter()
      .string("general.architecture", "llama")
      .u8("t.u8", 200).i8("t.i8", -100).u16("t.u16", 60000).i16("t.i16", -30000)
      .u32("t.u32", 4_000_000_000).i32("t.i32", -2_000_000_000).u64("t.u64", 2n ** 40n).i64("t.i64", -(2n ** 40n))
      .f32("t.f32", 1.5).f64("t.f64", Math.PI).bool("t.bool", true).string("t.string", "héllo")
      .array("t.strings", "string", ["a", "bc"]).array("t.f32s", "f32", [0.25, -1]).array("t.i32s", "i32", [-1, 2])
      .tensor("a.weight", [3], "f32", new Float32Array([1, 2, 3]))
      .tensor("b.weight", [2, 2], "f16", f16)
      .tensor("c.weight", [5], "f32", (chunk, start) => chunk.forEach((_, i) => (chunk[i] = start + i)))
      .write(path);

    const info = await readGgufFileInfo(path, { readTensorInfo: true });
    expect(info.version).toBe(3);
    const t = (info.metadata as unknown as { t: Record<string, unknown> }).t;
    expect(t).toMatchObject({ u8: 200, i8: -100, u16: 60000, i16: -30000, u32: 4_000_000_000, i32: -2_000_000_000, f32: 1.5, bool: true, string: "héllo" });
    expect(BigInt(t.u64 as bigint)).toBe(2n ** 40n);
    expect(BigInt(t.i64 as bigint)).toBe(-(2n ** 40n));
    expect(t.f64).toBeCloseTo(Math.PI, 12);
    expect(t.strings).toEqual(["a", "bc"]);
    expect(t.f32s).toEqual([0.25, -1]);
    expect(t.i32s).toEqual([-1, 2]);

    const tensors = info.fullTensorInfo!;
    expect(tensors.map((x) => [x.name, x.dimensions.map(Number), x.ggmlType])).toEqual([
      ["a.weight", [3], 0],
      ["b.weight", [2, 2], 1],
      ["c.weight", [5], 0],
    ]);
    // Offsets are aligned to 32 and the bytes land where the infos say.
    const bytes = readFileSync(path);
    for (const x of tensors) expect(Number(x.fileOffset) % 32).toBe(0);
    const at = (name: string) => Number(tensors.find((x) => x.name === name)!.fileOffset);
    expect(bytes.readFloatLE(at("a.weight") + 8)).toBe(3);
    expect(bytes.readUInt16LE(at("b.weight") + 2)).toBe(0xc000);
    expect(bytes.readFloatLE(at("c.weight") + 16)).toBe(4);
    expect(bytes.length).toBe(at("c.weight") + 20);
  });

  it("refuses data that does not match the shape", () => {
    expect(() => new GgufWriter().tensor("x", [2, 2], "f32", new Float32Array(3))).toThrow(/3 values for shape \[2, 2\]/);
  });
});
