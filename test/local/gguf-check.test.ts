/**
 * The GGUF file check that runs before llama.cpp: crafted headers (a table), and random
 * truncations and corruptions of real tiny models (fast-check). Every bad file gets a
 * BackendError("load") naming the file and what is wrong, at once.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BackendError } from "../../src/core/backend.ts";
import { checkGgufFile, describeLoadError, type ModelFileRole } from "../../src/backends/local/model-files.ts";
import { minimalGguf, RawGguf } from "../gguf/raw-gguf.ts";
import { writeTinyModelSet, type TinyModelSet } from "../gguf/tiny-models.ts";

let dir: string;
let tiny: TinyModelSet;
let fileNumber = 0;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "friend-gguf-check-"));
  tiny = writeTinyModelSet(join(dir, "tiny"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function fileWith(bytes: Buffer): string {
  const path = join(dir, `case-${fileNumber++}.gguf`);
  writeFileSync(path, bytes);
  return path;
}

async function checkError(path: string, role: ModelFileRole = "model"): Promise<BackendError> {
  const error = await checkGgufFile(path, role).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(BackendError);
  expect((error as BackendError).kind).toBe("load");
  expect((error as BackendError).message).toContain(path);
  return error as BackendError;
}

/** The issue's file: 24 bytes, GGUF v3, 2^48 tensors, 2^32 keys. */
const issueHeader = () => new RawGguf().header({ tensors: 2n ** 48n, keys: 2n ** 32n }).bytes();

describe("crafted headers", () => {
  const U32_MAX = 2 ** 32 - 1;
  it.each<[string, () => Buffer, RegExp]>([
    ["the issue's 24-byte header (2^48 tensors, 2^32 keys)", issueHeader, /damaged or truncated: its header claims 281474976710656 tensors and 4294967296 metadata keys, far more than any model has/],
    ["counts that fit the limits but not the file", () => new RawGguf().header({ tensors: 1000, keys: 10 }).zeros(100).bytes(), /claims 1000 tensors and 10 metadata keys, which need at least 24140 bytes, but the file has only 100 after its header/],
    ["an empty file", () => Buffer.alloc(0), /is not a GGUF file \(it is empty\)/],
    ["three bytes of the magic", () => Buffer.from("GGU"), /is not a GGUF file \(it starts with bytes 474755/],
    ["a safetensors file", () => Buffer.from('\x10\0\0\0\0\0\0\0{"__metadata__":{}}', "latin1"), /is not a GGUF file \(it starts with bytes 10000000, not "GGUF"\)/],
    ["only the magic", () => Buffer.from("GGUF"), /the file ends at byte 4, inside the header/],
    ["a header cut in the key count", () => new RawGguf().header({ tensors: 0, keys: 0 }).bytes().subarray(0, 20), /ends at byte 20, inside the header/],
    ["version 0", () => new RawGguf().header({ tensors: 0, keys: 0, version: 0 }).bytes(), /GGUF version is 0/],
    ["version 1", () => new RawGguf().header({ tensors: 0, keys: 0, version: 1 }).bytes(), /GGUF version 1, which llama.cpp no longer reads/],
    ["version 4", () => new RawGguf().header({ tensors: 0, keys: 0, version: 4 }).bytes(), /GGUF version 4, newer than this llama.cpp reads \(up to 3\)/],
    ["a big-endian file", () => new RawGguf().header({ tensors: 0, keys: 0, version: 0x03000000 }).bytes(), /big-endian/],
    ["no keys at all", () => new RawGguf().header({ tensors: 0, keys: 0 }).bytes(), /no general.architecture string/],
    ["general.architecture as a number", () => new RawGguf().header({ tensors: 0, keys: 1 }).kvU32("general.architecture", 7).bytes(), /no general.architecture string/],
    ["a key longer than the file", () => new RawGguf().header({ tensors: 0, keys: 1 }).u64(U32_MAX).zeros(20).bytes(), /the length of the name of metadata key 0 is 4294967295, which needs 4294967295 bytes, but only 20 remain/],
    ["an empty key", () => new RawGguf().header({ tensors: 0, keys: 1 }).string("").u32(4).u32(1).bytes(), /metadata key 0 has an empty name/],
    ["a key twice", () => new RawGguf().header({ tensors: 0, keys: 2 }).kvString("general.architecture", "llama").kvString("general.architecture", "gpt2").bytes(), /metadata key "general.architecture" appears twice/],
    ["an unknown value type", () => new RawGguf().header({ tensors: 0, keys: 1 }).kvU32("a.key", 0, 13).bytes(), /"a.key" has unknown type 13/],
    ["an array of arrays", () => new RawGguf().header({ tensors: 0, keys: 1 }).string("a.key").u32(9).u32(9).u64(1).zeros(20).bytes(), /"a.key" is an array of unknown type 9/],
    ["an array longer than the file", () => new RawGguf().header({ tensors: 0, keys: 1 }).string("tokenizer.ggml.tokens").u32(9).u32(8).u64(2n ** 40n).zeros(16).bytes(), /the length of "tokenizer.ggml.tokens" is 1099511627776, which needs at least 8796093022208 bytes, but only 16 remain/],
    ["a string value cut short", () => new RawGguf().header({ tensors: 0, keys: 1 }).string("general.architecture").u32(8).u64(5).text("lla").bytes(), /the length of "general.architecture" is 5, which needs 5 bytes, but only 3 remain/],
    ["general.alignment as a u64", () => new RawGguf().header({ tensors: 0, keys: 1 }).string("general.alignment").u32(10).u64(32).bytes(), /general.alignment has type u64, not u32/],
    ["general.alignment of 24", () => new RawGguf().header({ tensors: 0, keys: 1 }).kvU32("general.alignment", 24).bytes(), /general.alignment is 24, not a power of 2/],
    ["a tensor name of 64 bytes", () => new RawGguf().header({ tensors: 1, keys: 1 }).kvString("general.architecture", "llama").tensor("x".repeat(64), [4], 0, 0).zeros(64).bytes(), /the name of tensor 0 is 64 bytes long \(at most 63\)/],
    ["a tensor twice", () => new RawGguf().header({ tensors: 2, keys: 1 }).kvString("general.architecture", "llama").tensor("t", [8], 0, 0).tensor("t", [8], 0, 32).align().zeros(64).bytes(), /tensor "t" appears twice/],
    ["five dimensions", () => new RawGguf().header({ tensors: 1, keys: 1 }).kvString("general.architecture", "llama").tensor("t", [1, 1, 1, 1, 1], 0, 0).zeros(64).bytes(), /tensor "t" has 5 dimensions \(at most 4\)/],
    ["a negative dimension", () => new RawGguf().header({ tensors: 1, keys: 1 }).kvString("general.architecture", "llama").tensor("t", [-4], 0, 0).zeros(64).bytes(), /tensor "t" has a negative dimension/],
    ["2^63 elements", () => new RawGguf().header({ tensors: 1, keys: 1 }).kvString("general.architecture", "llama").tensor("t", [2n ** 32n, 2n ** 31n], 0, 0).zeros(64).bytes(), /tensor "t" has too many elements/],
    ["a removed ggml type (Q4_2)", () => new RawGguf().header({ tensors: 1, keys: 1 }).kvString("general.architecture", "llama").tensor("t", [32], 4, 0).zeros(64).bytes(), /tensor "t" has unknown ggml type 4/],
    ["a type past the last one", () => new RawGguf().header({ tensors: 1, keys: 1 }).kvString("general.architecture", "llama").tensor("t", [32], 43, 0).zeros(64).bytes(), /unknown ggml type 43/],
    ["a Q4_0 row of 31 elements", () => new RawGguf().header({ tensors: 1, keys: 1 }).kvString("general.architecture", "llama").tensor("t", [31], 2, 0).zeros(64).bytes(), /tensor "t" of type Q4_0 has rows of 31 elements, not a multiple of 32/],
    ["overlapping tensors", () => new RawGguf().header({ tensors: 2, keys: 1 }).kvString("general.architecture", "llama").tensor("a", [8], 0, 0).tensor("b", [8], 0, 16).align().zeros(64).bytes(), /tensor "b" says its data is at offset 16, but the previous tensors end at 32/],
    ["tensor data past the end", () => minimalGguf().bytes().subarray(0, -1), /its tensors need \d+ bytes, but the file has only \d+ \(an interrupted download or copy\?\)/],
    ["an adapter given as the model", () => minimalGguf({ type: "adapter" }).bytes(), /is a LoRA adapter, not a model .*LLAMA_LORA_PATH/],
  ])("%s", async (_, bytes, reason) => {
    const err = await checkError(fileWith(bytes()));
    expect(err.message).toMatch(reason);
  });

  it("a model given as the adapter", async () => {
    const err = await checkError(fileWith(minimalGguf({ type: "model" }).bytes()), "LoRA adapter");
    expect(err.message).toMatch(/local LoRA adapter file .* is not a LoRA adapter \(general.type is "model"; a model, perhaps\?\)/);
  });

  it("accepts the smallest well-formed layout, and the tiny models and adapter", async () => {
    expect(await checkGgufFile(fileWith(minimalGguf().bytes()), "model")).toMatchObject({ version: 3, tensorCount: 1, keyCount: 1, architecture: "llama" });
    expect(await checkGgufFile(tiny.model, "model")).toMatchObject({ architecture: "llama", tensorCount: 12 });
    expect(await checkGgufFile(tiny.adapter, "LoRA adapter")).toMatchObject({ type: "adapter", tensorCount: 2 });
  });

  it("metadata over 1 MiB is read in more than one go", async () => {
    // A 2 MB token list: the first read (1 MiB) ends inside it.
    const tokens = Array.from({ length: 120_000 }, (_, i) => `token-${i}`);
    const gguf = new RawGguf().header({ tensors: 1, keys: 2 }).kvString("general.architecture", "llama").string("tokenizer.ggml.tokens").u32(9).u32(8).u64(tokens.length);
    for (const t of tokens) gguf.string(t);
    gguf.tensor("t", [4], 0, 0).align().zeros(16);
    const summary = await checkGgufFile(fileWith(gguf.bytes()), "model");
    expect(summary.metadataBytes).toBeGreaterThan(2_000_000);
  });

  it("advice differs for a downloaded file: delete it and it is fetched again", async () => {
    const path = fileWith(readFileSync(tiny.model).subarray(0, 1000));
    await expect(checkGgufFile(path, "model", { downloadedFrom: "hf:someone/model:Q4_K_M" })).rejects.toThrow(
      `It was downloaded from hf:someone/model:Q4_K_M; delete ${path} and Friend downloads it again.`,
    );
    await expect(checkGgufFile(path, "model")).rejects.toThrow("Set LLAMA_MODEL_PATH to a GGUF model");
  });
});

describe("raw errors from node-llama-cpp become reasons about the file", () => {
  it("a TypeError is said in words, with the original message kept", () => {
    const raw = new TypeError("Cannot read properties of undefined (reading 'architecture')");
    expect(describeLoadError(raw)).toBe(
      "node-llama-cpp could not make sense of its metadata (Cannot read properties of undefined (reading 'architecture')); the file may be damaged or not a llama.cpp model",
    );
    expect(describeLoadError(new Error("Failed to load model"))).toBe("Failed to load model");
  });
});

/** Every outcome of checking a damaged copy: accepted, or a clear load error naming it. Never another error. */
async function checkSettles(path: string): Promise<"accepted" | "rejected"> {
  try {
    await checkGgufFile(path, "model");
    return "accepted";
  } catch (err) {
    expect(err).toBeInstanceOf(BackendError);
    expect((err as BackendError).kind).toBe("load");
    expect((err as BackendError).message).toContain(path);
    expect((err as BackendError).message).toMatch(/is not a GGUF file|is damaged or truncated|is a LoRA adapter/);
    return "rejected";
  }
}

describe("random damage to real files (property)", () => {
  it("every truncation of the tiny model and adapter is rejected as truncated", async () => {
    const files = [readFileSync(tiny.model), readFileSync(tiny.adapter)];
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 1 }).chain((f) => fc.tuple(fc.constant(f), fc.integer({ min: 0, max: files[f]!.length - 1 }))),
        async ([f, length]) => {
          const path = fileWith(files[f]!.subarray(0, length));
          const err = await checkError(path, f === 0 ? "model" : "LoRA adapter");
          expect(err.message).toMatch(length < 4 ? /is not a GGUF file/ : /is damaged or truncated: .*(ends at byte|need|remain)/);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("random bytes and random 64-bit values written into the header, metadata and tensor infos give a clear answer", async () => {
    const original = readFileSync(tiny.model);
    const metadataBytes = (await checkGgufFile(tiny.model, "model")).metadataBytes;
    const damage = fc.oneof(
      fc.record({ at: fc.integer({ min: 0, max: metadataBytes - 1 }), byte: fc.integer({ min: 0, max: 255 }) }),
      fc.record({ at: fc.integer({ min: 0, max: metadataBytes - 8 }), u64: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
      // The count and length fields are the dangerous ones; aim at the header's two counts often.
      fc.record({ at: fc.constantFrom(8, 16), u64: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
    );
    let rejected = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(damage, { minLength: 1, maxLength: 4 }), async (changes) => {
        const bytes = Buffer.from(original);
        for (const change of changes) {
          if ("byte" in change) bytes[change.at] = change.byte;
          else bytes.writeBigUInt64LE(change.u64, change.at);
        }
        if ((await checkSettles(fileWith(bytes))) === "rejected") rejected++;
      }),
      { numRuns: 400 },
    );
    // Most damage is caught here; what is not (a changed token, say) is still a well-formed file.
    expect(rejected).toBeGreaterThan(100);
  });
});
