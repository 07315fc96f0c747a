// npm run bench -- adapter: `friend adapter import` on a Llama-2-7B-shaped PEFT adapter (rank 16 on all
// seven modules of 32 layers, 160 MB of F32), for each output type: wall time and peak memory. The
// importer reads and writes one tensor at a time, so peak RSS should stay near the largest tensor, not the file.
import { mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readBaseModelShape } from "../src/adapters/base-model.ts";
import { ADAPTER_OUT_TYPES, importPeftAdapter } from "../src/adapters/import.ts";
import { GgufWriter } from "../src/gguf/writer.ts";

const LLAMA2_7B = { hidden: 4096, ff: 11008, layers: 32, heads: 32 };
const RANK = 16;
const dir = join(tmpdir(), `friend-bench-adapter-${process.pid}`);
mkdirSync(join(dir, "peft"), { recursive: true });

// A base GGUF with the shapes' metadata only: the importer reads nothing else of it.
const base = join(dir, "base.gguf");
new GgufWriter()
  .string("general.architecture", "llama")
  .u32("llama.embedding_length", LLAMA2_7B.hidden)
  .u32("llama.feed_forward_length", LLAMA2_7B.ff)
  .u32("llama.block_count", LLAMA2_7B.layers)
  .u32("llama.attention.head_count", LLAMA2_7B.heads)
  .u32("llama.attention.head_count_kv", LLAMA2_7B.heads)
  .tensor("t", [32], "f32", new Float32Array(32))
  .write(base);

// The PEFT folder, written as the safetensors format lays it out (header, then each tensor's bytes).
const modules: Array<[string, string, number, number]> = [];
for (let l = 0; l < LLAMA2_7B.layers; l++) {
  for (const m of ["q_proj", "k_proj", "v_proj", "o_proj"]) modules.push([`layers.${l}.self_attn.${m}`, m, LLAMA2_7B.hidden, LLAMA2_7B.hidden]);
  for (const m of ["gate_proj", "up_proj"]) modules.push([`layers.${l}.mlp.${m}`, m, LLAMA2_7B.ff, LLAMA2_7B.hidden]);
  modules.push([`layers.${l}.mlp.down_proj`, "down_proj", LLAMA2_7B.hidden, LLAMA2_7B.ff]);
}
const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
const tensors: Array<[string, number[]]> = [];
for (const [path, , out, inSize] of modules) {
  tensors.push([`base_model.model.model.${path}.lora_A.weight`, [RANK, inSize]], [`base_model.model.model.${path}.lora_B.weight`, [out, RANK]]);
}
let offset = 0;
for (const [name, shape] of tensors) {
  const bytes = shape[0]! * shape[1]! * 4;
  header[name] = { dtype: "F32", shape, data_offsets: [offset, offset + bytes] };
  offset += bytes;
}
const json = Buffer.from(JSON.stringify(header));
const length = Buffer.alloc(8);
length.writeBigUInt64LE(BigInt(json.length));
// In a function, so the 160 MB of values are garbage by the time memory is measured.
(() => {
  const data = new Float32Array(offset / 4);
  for (let i = 0; i < data.length; i++) data[i] = ((i * 2654435761) % 1000) / 10000 - 0.05;
  writeFileSync(join(dir, "peft", "adapter_model.safetensors"), Buffer.concat([length, json, Buffer.from(data.buffer)]));
})();
writeFileSync(join(dir, "peft", "adapter_config.json"), JSON.stringify({ peft_type: "LORA", r: RANK, lora_alpha: 16, target_modules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] }));
const inputBytes = statSync(join(dir, "peft", "adapter_model.safetensors")).size;
console.log(`PEFT adapter: ${modules.length} LoRA pairs, ${(inputBytes / 1e6).toFixed(1)} MB F32`);

try {
  const shape = await readBaseModelShape(base);
  for (const outType of ADAPTER_OUT_TYPES) {
    globalThis.gc?.();
    const rssBefore = process.memoryUsage().rss;
    let peak = rssBefore;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
    const started = performance.now();
    const out = join(dir, `out-${outType}.gguf`);
    const result = await importPeftAdapter({ peftDir: join(dir, "peft"), base: shape, out, outType, onProgress: () => (peak = Math.max(peak, process.memoryUsage().rss)) });
    const ms = performance.now() - started;
    clearInterval(sampler);
    console.log(`${outType.padEnd(5)} ${(ms / 1000).toFixed(2)} s, ${(result.bytes / 1e6).toFixed(1)} MB written, ${((inputBytes / 1e6) / (ms / 1000)).toFixed(0)} MB/s in; RSS ${(rssBefore / 2 ** 20).toFixed(0)} MiB before, peak +${((peak - rssBefore) / 2 ** 20).toFixed(0)} MiB`);
    rmSync(out);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
