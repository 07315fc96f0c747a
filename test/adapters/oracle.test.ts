/**
 * The oracle: the tiny PEFT adapter imported by Friend equals llama.cpp's own conversion of it
 * (test/adapters/fixtures/peft-lora-tiny, made by convert_lora_to_gguf.py): the same metadata,
 * the same tensor names, shapes and types, and the same bytes, for every output type.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readBaseModelShape } from "../../src/adapters/base-model.ts";
import { ADAPTER_OUT_TYPES, importPeftAdapter } from "../../src/adapters/import.ts";
import { readGgufFile, readGgufTensorBytes } from "../../src/gguf/reader.ts";
import { FIXTURE, writeFixtureBase } from "./helpers/fixture.ts";

let dir: string;
let baseGguf: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "friend-oracle-"));
  baseGguf = writeFixtureBase(join(dir, "base.gguf"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Everything the two files hold, in file order: each key's type and value, each tensor's name, shape, type and bytes. */
async function contents(path: string) {
  const layout = await readGgufFile(path);
  const tensors = [];
  for (const t of layout.tensors) {
    tensors.push({ name: t.name, ne: t.ne, type: t.typeName, data: (await readGgufTensorBytes(path, layout, t)).toString("hex") });
  }
  return { kvs: [...layout.kvs], tensors };
}

describe.each(ADAPTER_OUT_TYPES)("--outtype %s", (outType) => {
  it.each([
    ["the base GGUF", () => baseGguf],
    ["the base's config.json", () => join(FIXTURE, "base", "config.json")],
  ])("equals llama.cpp's conversion, read against %s", async (_, base) => {
    const out = join(dir, `imported-${outType}-${Math.random().toString(36).slice(2)}.gguf`);
    await importPeftAdapter({ peftDir: join(FIXTURE, "adapter"), base: await readBaseModelShape(base()), out, outType });
    const reference = await contents(join(FIXTURE, `reference-${outType}.gguf`));
    const imported = await contents(out);
    expect(imported.kvs).toEqual(reference.kvs);
    expect(imported.tensors.map((t) => [t.name, t.ne, t.type])).toEqual(reference.tensors.map((t) => [t.name, t.ne, t.type]));
    for (const [i, t] of imported.tensors.entries()) expect(t.data, t.name).toBe(reference.tensors[i]!.data);
    expect(reference.tensors.length).toBe(16);
  });
});

it("copies the model card's name, licence, base model, tags and languages as llama.cpp's converter does", async () => {
  // The converter names the adapter after its folder, so this one is called "adapter" too.
  const peftDir = join(dir, "card", "adapter");
  mkdirSync(peftDir, { recursive: true });
  for (const f of ["adapter_config.json", "adapter_model.safetensors"]) copyFileSync(join(FIXTURE, "adapter", f), join(peftDir, f));
  copyFileSync(join(FIXTURE, "card", "README.md"), join(peftDir, "README.md"));
  const out = join(dir, "card.gguf");
  await importPeftAdapter({ peftDir, base: await readBaseModelShape(baseGguf), out, outType: "f16" });
  const reference = await contents(join(FIXTURE, "reference-card-f16.gguf"));
  expect((await contents(out)).kvs).toEqual(reference.kvs);
  expect(reference.kvs.map(([key]) => key)).toContain("general.base_model.0.repo_url");
});
