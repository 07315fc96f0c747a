/**
 * How a PEFT LoRA on a Hugging Face Llama maps onto llama.cpp's adapter tensors: the names, the
 * shapes each module must have on a given base, and the RoPE row order of q and k.
 */
import type { BaseModelShape } from "./base-model.ts";

type Dim = (base: BaseModelShape) => number;

interface LlamaModule {
  /** llama.cpp's tensor name within a block, e.g. `attn_q`. */
  gguf: string;
  inSize: Dim;
  outSize: Dim;
  /** Heads whose rows llama.cpp's converter permutes for RoPE (q: all heads, k: the key/value heads). */
  ropeHeads?: Dim;
}

const hidden: Dim = (b) => b.hiddenSize;
const qSize: Dim = (b) => b.headCount * b.headDim;
const kvSize: Dim = (b) => b.headCountKv * b.headDim;
const ffSize: Dim = (b) => b.feedForwardSize;

/** Hugging Face module name → llama.cpp tensor (convert_hf_to_gguf.py's tensor map for Llama). */
export const LLAMA_MODULES: Readonly<Record<string, LlamaModule>> = {
  q_proj: { gguf: "attn_q", inSize: hidden, outSize: qSize, ropeHeads: (b) => b.headCount },
  k_proj: { gguf: "attn_k", inSize: hidden, outSize: kvSize, ropeHeads: (b) => b.headCountKv },
  v_proj: { gguf: "attn_v", inSize: hidden, outSize: kvSize },
  o_proj: { gguf: "attn_output", inSize: qSize, outSize: hidden },
  gate_proj: { gguf: "ffn_gate", inSize: hidden, outSize: ffSize },
  up_proj: { gguf: "ffn_up", inSize: hidden, outSize: ffSize },
  down_proj: { gguf: "ffn_down", inSize: ffSize, outSize: hidden },
};

/** What a PEFT tensor name says: a LoRA matrix of a known module, or why it cannot be imported. */
export type PeftTensorName =
  | { kind: "lora"; layer: number; module: string; moduleName: string; matrix: "A" | "B"; ggufBase: string }
  | { kind: "refused"; reason: string };

const LORA_NAME = /^base_model\.model\.(model\.layers\.(\d+)\.(?:self_attn|mlp)\.([A-Za-z0-9_]+))\.lora_([AB])\.weight$/;

export function parsePeftTensorName(name: string): PeftTensorName {
  const m = LORA_NAME.exec(name);
  if (m) {
    const [, moduleName, layer, module, matrix] = m;
    if (!(module! in LLAMA_MODULES)) return { kind: "refused", reason: `tensor "${name}" is a LoRA on ${module}, which a Llama model does not have` };
    return { kind: "lora", layer: Number(layer), module: module!, moduleName: moduleName!, matrix: matrix as "A" | "B", ggufBase: `blk.${layer}.${LLAMA_MODULES[module!]!.gguf}.weight` };
  }
  if (name.includes("lora_magnitude_vector")) return { kind: "refused", reason: `tensor "${name}" is a DoRA magnitude vector, which llama.cpp's LoRA format cannot hold; train with use_dora=False` };
  if (/(?:^|\.)(?:embed_tokens|lora_embedding_[AB])(?:\.|$)/.test(name)) return { kind: "refused", reason: `tensor "${name}" is a LoRA on the token embeddings, which Friend does not import (new tokens or embedding LoRA change the vocabulary the base model was made with)` };
  if (/(?:^|\.)lm_head(?:\.|$)/.test(name)) return { kind: "refused", reason: `tensor "${name}" is a LoRA on the output head (lm_head), which Friend does not import; train on the attention and MLP modules only` };
  if (name.includes("modules_to_save") || /\.(?:weight|bias)$/.test(name) && !/\.lora_[AB]\./.test(name)) {
    return { kind: "refused", reason: `tensor "${name}" is a fully trained weight (modules_to_save), not a LoRA pair; llama.cpp's LoRA format cannot hold it` };
  }
  if (/\.lora_[AB]\.bias$/.test(name)) return { kind: "refused", reason: `tensor "${name}" is a LoRA bias (lora_bias=True), which llama.cpp's LoRA format cannot hold` };
  return { kind: "refused", reason: `tensor "${name}" is not a LoRA matrix of a Llama model's layers (expected base_model.model.model.layers.N.self_attn|mlp.MODULE.lora_A|lora_B.weight)` };
}

/**
 * The rows of a `[out, r]` lora_b in llama.cpp's RoPE order, as its converter's `permute` does to
 * q and k: per head, the two halves of the head's rows are interleaved.
 */
export function permuteRopeRows(values: Float32Array, rows: number, cols: number, heads: number): Float32Array {
  const headRows = rows / heads;
  const half = headRows / 2;
  const out = new Float32Array(values.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const to = (h * headRows + i * 2 + j) * cols;
        const from = (h * headRows + j * half + i) * cols;
        // A typed-array copy, so values (NaN payloads included) move bit for bit.
        out.set(values.subarray(from, from + cols), to);
      }
    }
  }
  return out;
}
