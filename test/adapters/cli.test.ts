/**
 * `friend adapter import` and `friend adapter inspect` as a user runs them: a real process for the
 * issue's bad inputs (one line on stderr, exit 1, no file), and in-process for the rest.
 */
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli.ts";
import { GgufWriter } from "../../src/gguf/writer.ts";
import { captureIo } from "../data/helpers/capture-io.ts";
import { FakeModelServer } from "../fakes/model-server.ts";
import { FIXTURE, writeFixtureBase, writePeftFolder } from "./helpers/fixture.ts";

const BIN = fileURLToPath(new URL("../../bin/friend.js", import.meta.url));
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "friend-adapter-cli-"));
  writeFixtureBase(join(dir, "base.gguf"));
  cpSync(join(FIXTURE, "adapter"), join(dir, "friends-lora"), { recursive: true });
  new GgufWriter().string("general.architecture", "gpt2").u32("gpt2.embedding_length", 64).tensor("t", [4], "f32", new Float32Array(4)).write(join(dir, "gpt2.gguf"));
  writeFileSync(join(dir, "notes.txt"), "not a model");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function friend(argv: string[]) {
  const captured = captureIo({ cwd: dir, env: {} });
  const code = await main(argv, captured.io);
  return { code, out: captured.out, err: captured.err };
}

describe("friend adapter import, bad input (a real process)", () => {
  const broken = (name: string, change: (folder: string) => void) => () => {
    cpSync(join(FIXTURE, "adapter"), join(dir, name), { recursive: true });
    change(join(dir, name));
    return name;
  };
  const safetensors = readFileSync(join(FIXTURE, "adapter", "adapter_model.safetensors"));
  it.each<[string, () => string, string, RegExp]>([
    ["a truncated safetensors file", broken("truncated", (f) => writeFileSync(join(f, "adapter_model.safetensors"), safetensors.subarray(0, safetensors.length - 100))), "base.gguf", /truncated/],
    ["a header that lies about offsets", () => writePeftFolder(join(dir, "lying"), {}, { offsets: { "base_model.model.model.layers.1.self_attn.o_proj.lora_A.weight": [0, 1024] } }).slice(dir.length + 1), "base.gguf", /overlaps the tensor before it/],
    ["a missing adapter_config.json", broken("no-config", (f) => rmSync(join(f, "adapter_config.json"))), "base.gguf", /has no adapter_config\.json/],
    ["a base that is not a GGUF", () => "friends-lora", "notes.txt", /notes\.txt is not a GGUF file/],
    ["a base of another architecture", () => "friends-lora", "gpt2.gguf", /is a "gpt2" model; only Llama models/],
  ])("%s: one line, exit 1, nothing written", (_, peftDir, base, error) => {
    const result = spawnSync(process.execPath, [BIN, "adapter", "import", peftDir(), "--base", base, "--out", "adapters/out.gguf"], { cwd: dir, encoding: "utf8", timeout: 30_000 });
    expect(result.status).toBe(1);
    expect(result.stdout).toBe("");
    const lines = result.stderr.trimEnd().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^friend adapter import: /);
    expect(lines[0]).toMatch(error);
    expect(existsSync(join(dir, "adapters")) ? readdirSync(join(dir, "adapters")) : []).toEqual([]);
  });
});

describe("friend adapter import", () => {
  it("writes adapters/<folder>.gguf by default and says what it checked", async () => {
    const { code, out, err } = await friend(["adapter", "import", "friends-lora", "--base", "base.gguf", "--outtype", "f16"]);
    expect(err).toEqual([]);
    expect(code).toBe(0);
    expect(out[0]).toBe("wrote adapters/friends-lora.gguf (8 LoRA pairs, f16, 8.7 KB)");
    expect(out[1]).toMatch(/^checked against .*base\.gguf: llama, 2 layers, width 64, 4 heads \(2 key\/value\)$/);
    // The same tensors as llama.cpp's conversion (the oracle test compares them in full).
    expect(readFileSync(join(dir, "adapters", "friends-lora.gguf")).length).toBe(readFileSync(join(FIXTURE, "reference-f16.gguf")).length);
  });

  it("reads a URL base's metadata alone, without downloading the model, and writes the same adapter", async () => {
    const server = await FakeModelServer.start();
    try {
      const baseBytes = readFileSync(join(dir, "base.gguf"));
      server.file("/files/base.gguf", baseBytes);
      const { code, err } = await friend(["adapter", "import", "friends-lora", "--base", `${server.url}/files/base.gguf`, "--out", "adapters/from-url.gguf"]);
      expect(err).toEqual([]);
      expect(code).toBe(0);
      expect(existsSync(join(dir, "models"))).toBe(false);
      const sent = server.requests.filter((r) => r.path === "/files/base.gguf" && r.method === "GET");
      expect(sent.length).toBeGreaterThan(0);
      expect(sent.every((r) => r.range !== undefined)).toBe(true);
      await friend(["adapter", "import", "friends-lora", "--base", "base.gguf", "--out", "adapters/from-file.gguf"]);
      expect(readFileSync(join(dir, "adapters", "from-url.gguf")).equals(readFileSync(join(dir, "adapters", "from-file.gguf")))).toBe(true);
    } finally {
      await server.stop();
    }
  });

  it("says how rsLoRA was handled", async () => {
    writePeftFolder(join(dir, "rs"), { config: { use_rslora: true } });
    const { code, out } = await friend(["adapter", "import", "rs", "--base", "base.gguf", "--out", "adapters/rs.gguf"]);
    expect(code).toBe(0);
    expect(out).toContain("note: rsLoRA: adapter.lora.alpha is 8·sqrt(4) = 16, so that llama.cpp's alpha/rank is PEFT's alpha/sqrt(rank)");
  });

  it.each<[string[], RegExp]>([
    [["adapter", "import"], /give the PEFT adapter folder/],
    [["adapter", "import", "friends-lora"], /--base is required/],
    [["adapter", "import", "friends-lora", "--base", "base.gguf", "--outtype", "q4_0"], /--outtype must be f32, f16, bf16, q8_0, not "q4_0"/],
    [["adapter", "import", "friends-lora", "--base", "base.gguf", "--out", "x.bin"], /--out must name a \.gguf file/],
    [["adapter", "import", "hf:friends/lora-GGUF:Q8_0", "--base", "base.gguf"], /"hf:friends\/lora-GGUF:Q8_0" is not a PEFT adapter repository: give it as hf:user\/repo/],
  ])("usage errors exit 2: %j", async (argv, error) => {
    const { code, err } = await friend(argv);
    expect(code).toBe(2);
    expect(err).toHaveLength(1);
    expect(err[0]).toMatch(error);
  });
});

describe("friend adapter inspect", () => {
  it("shows a PEFT folder's rank, alpha, scale, targets, base, size and dtypes", async () => {
    const { code, out } = await friend(["adapter", "inspect", "friends-lora"]);
    expect(code).toBe(0);
    expect(out).toEqual([
      "friends-lora: PEFT LoRA adapter folder",
      "rank: 4   alpha: 8   scale: 2 (alpha/rank)",
      "targets: q_proj, k_proj, v_proj, o_proj on 2 layers",
      "base model: not named",
      "size: 16.4 KB; dtypes: F32",
      "note: saved by PEFT 0.21.0",
    ]);
  });

  it("shows the same for llama.cpp's GGUF conversion of it", async () => {
    cpSync(join(FIXTURE, "reference-q8_0.gguf"), join(dir, "reference-q8_0.gguf"));
    const { code, out } = await friend(["adapter", "inspect", "reference-q8_0.gguf"]);
    expect(code).toBe(0);
    expect(out).toEqual([
      "reference-q8_0.gguf: GGUF LoRA adapter for llama",
      "rank: 4   alpha: 8   scale: 2 (alpha/rank)",
      "targets: q_proj, k_proj, v_proj, o_proj on 2 layers",
      "base model: not named",
      "size: 6.9 KB; dtypes: Q8_0, F16",
    ]);
  });

  it("shows rsLoRA's scale as alpha/sqrt(rank)", async () => {
    writePeftFolder(join(dir, "rs-inspect"), { config: { use_rslora: true } });
    const { out } = await friend(["adapter", "inspect", "rs-inspect"]);
    expect(out[1]).toBe("rank: 4   alpha: 8   scale: 4 (alpha/sqrt(rank), rsLoRA)");
  });

  it.each<[string, RegExp]>([
    ["nowhere", /nowhere does not exist/],
    ["notes.txt", /notes\.txt is neither a GGUF file .* nor a PEFT adapter folder/],
    ["base.gguf", /base\.gguf is not a LoRA adapter/],
  ])("refuses %s in one line, exit 1", async (target, error) => {
    const { code, err } = await friend(["adapter", "inspect", target]);
    expect(code).toBe(1);
    expect(err).toHaveLength(1);
    expect(err[0]).toMatch(error);
  });
});
