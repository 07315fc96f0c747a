/**
 * The safetensors reader: values round-trip in every dtype; any truncation or corruption of a
 * real file is either read as a consistent file or refused with a SafetensorsError naming the file.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { f16ToNumber, SafetensorsError, SafetensorsFile } from "../../src/adapters/safetensors.ts";
import { f16Bits } from "../../src/gguf/writer.ts";
import { FIXTURE, seededValues } from "./helpers/fixture.ts";
import { safetensorsBytes } from "./helpers/safetensors-writer.ts";

let dir: string;
let n = 0;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "friend-safetensors-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(bytes: Uint8Array): string {
  const path = join(dir, `case-${n++}.safetensors`);
  writeFileSync(path, bytes);
  return path;
}

/** Opens and reads every tensor; returns the error, if any. */
async function readAll(path: string): Promise<unknown> {
  try {
    const st = await SafetensorsFile.open(path);
    try {
      for (const name of st.tensors.keys()) await st.readFloat32(name);
    } finally {
      await st.close();
    }
    return undefined;
  } catch (err) {
    return err;
  }
}

describe("reading", () => {
  it.each(["F32", "F16", "BF16"] as const)("gives back %s values exactly", async (dtype) => {
    const values = seededValues(48, 11);
    const path = file(safetensorsBytes([{ name: "w", dtype, shape: [6, 8], values }], { format: "pt" }));
    const st = await SafetensorsFile.open(path);
    expect(st.tensors.get("w")).toMatchObject({ dtype, shape: [6, 8] });
    expect(st.metadata).toEqual({ format: "pt" });
    expect(await st.readFloat32("w")).toEqual(values);
    await st.close();
  });

  it("reads the fixture PEFT wrote: 16 tensors, the lora_A of q at [4, 64]", async () => {
    const st = await SafetensorsFile.open(join(FIXTURE, "adapter", "adapter_model.safetensors"));
    expect(st.tensors.size).toBe(16);
    expect(st.tensors.get("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")).toMatchObject({ dtype: "F32", shape: [4, 64] });
    expect((await st.readFloat32("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight")).length).toBe(64 * 4);
    await st.close();
  });

  it("f16ToNumber inverts f16Bits for every half-precision value", () => {
    for (let h = 0; h < 0x10000; h++) {
      const v = f16ToNumber(h);
      if (Number.isNaN(v)) expect((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0).toBe(true);
      else expect(f16Bits(v)).toBe(h);
    }
  });
});

describe("damaged files", () => {
  const real = readFileSync(join(FIXTURE, "adapter", "adapter_model.safetensors"));

  it.each<[string, Buffer, RegExp]>([
    ["an empty file", Buffer.alloc(0), /is 0 bytes long, too short/],
    ["a header length past the end", Buffer.concat([Buffer.from([0xff, 0xff, 0, 0, 0, 0, 0, 0]), Buffer.from("{}")]), /its header says it is 65535 bytes long, but the file has only 2/],
    ["a GGUF file", readFileSync(join(FIXTURE, "reference-f32.gguf")), /header says it is \d+ bytes long|not valid JSON/],
    ["a JSON array header", safetensorsBytes([], {}, { headerText: "[]" }), /its header is not a JSON object/],
    ["a tensor without offsets", safetensorsBytes([], {}, { headerText: JSON.stringify({ w: { dtype: "F32", shape: [1] } }) }), /lacks a dtype, shape or data_offsets/],
    ["a negative dimension", safetensorsBytes([], {}, { headerText: JSON.stringify({ w: { dtype: "F32", shape: [-1], data_offsets: [0, 0] } }) }), /shape that is not a list of whole numbers/],
    ["an unknown dtype", safetensorsBytes([], {}, { headerText: JSON.stringify({ w: { dtype: "F128", shape: [1], data_offsets: [0, 16] } }) }), /unknown dtype "F128"/],
    ["trailing bytes no tensor covers", Buffer.concat([safetensorsBytes([{ name: "w", dtype: "F32", shape: [2], values: new Float32Array(2) }]), Buffer.alloc(4)]), /cover 8 bytes of data, but the file holds 12/],
  ])("%s is refused", async (_, bytes, error) => {
    const path = file(bytes);
    const err = await readAll(path);
    expect(err).toBeInstanceOf(SafetensorsError);
    expect((err as Error).message).toMatch(error);
    expect((err as Error).message.startsWith(path)).toBe(true);
  });

  it("a named pipe or a directory is refused at once as not a file (a pipe is never waited on for a writer)", async () => {
    const fifo = join(dir, "adapter.fifo");
    execFileSync("mkfifo", [fifo]);
    for (const path of [fifo, dir]) {
      const err = await readAll(path);
      expect(err).toBeInstanceOf(SafetensorsError);
      expect((err as Error).message).toBe(`${path}: is not a file`);
    }
  }, 10_000);

  it("any truncation of a real file is refused, naming the file", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: real.length - 1 }), async (length) => {
        const err = await readAll(file(real.subarray(0, length)));
        expect(err).toBeInstanceOf(SafetensorsError);
      }),
      { numRuns: 60 },
    );
  });

  it("any corrupted byte either still reads as a consistent file or is refused as a SafetensorsError", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 8 + 2008 - 1 }), fc.integer({ min: 0, max: 255 }), async (at, byte) => {
        const bytes = Buffer.from(real);
        bytes[at] = byte;
        const err = await readAll(file(bytes));
        if (err !== undefined) expect(err).toBeInstanceOf(SafetensorsError);
      }),
      { numRuns: 150 },
    );
  });
});
