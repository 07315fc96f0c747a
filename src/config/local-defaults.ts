/** The local backend's defaults: the config's, which LocalBackend falls back on too (the config must not load node-llama-cpp to know them). */
export const LOCAL_DEFAULTS = {
  /** LLAMA_MODEL_PATH when unset: Llama-2-7B, 4-bit (about 4.1 GB), downloaded into `modelsDir` on first use. */
  modelSource: "hf:TheBloke/Llama-2-7B-GGUF:Q4_K_M",
  /** Where older setups put the model by hand; used instead of the download when present. */
  legacyModelPath: "models/llama-2-7b.Q4_K_M.gguf",
  /** Where the LoRA adapter is looked for when LLAMA_LORA_PATH is not set at all. */
  loraPath: "adapters/friends-lora.gguf",
  /** Where downloaded models and adapters go: the Docker image's volumes. */
  modelsDir: "models",
  adaptersDir: "adapters",
  loraScale: 1,
  gpuLayers: "auto",
  contextSize: 4096,
  sequences: 4,
  build: "prebuilt",
  /** LLAMA_LOAD_TIMEOUT_S: a 7B Q4_K_M loads in seconds from a warm disk, a minute or two from a slow one. */
  loadTimeoutS: 300,
  /** LLAMA_DOWNLOAD_STALL_S: a download that receives no new bytes for this long fails (node-llama-cpp's downloader would retry for about 13 minutes). */
  downloadStallS: 60,
  /** LLAMA_DOWNLOAD_TIMEOUT_S: 4.1 GB at 5 Mbit/s takes under 2 hours; a stopped download resumes on the next attempt. */
  downloadTimeoutS: 3 * 3600,
} as const;

/** LLAMA_BUILD: node-llama-cpp's prebuilt binary, or the build `npm run build:llama` made for this machine. */
export const LLAMA_BUILDS = ["prebuilt", "native"] as const;
export type LlamaBuildChoice = (typeof LLAMA_BUILDS)[number];
