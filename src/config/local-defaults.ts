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
  /** LLAMA_STATE_CACHE_MB: disk kept for channels' saved KV states; 0 saves none. */
  stateCacheMb: 2048,
  /**
   * LLAMA_STATE_SAVE_TURNS: also save a channel's state after every this many answered turns, so a
   * SIGKILL loses at most that many turns of evaluation; 0 saves only at eviction and at the graceful
   * stop. Off by default: each save writes the whole state (about 0.5 MiB a token for a 7B model in F16).
   */
  stateSaveTurns: 0,
  /** LLAMA_STATE_DIR when unset: this folder next to the database, so the volume that keeps one keeps both. */
  stateDirName: "llama-state",
  /** LLAMA_KV_CACHE_TYPE: llama.cpp's own default; q8_0 halves the KV cache (docs/PERFORMANCE.md). */
  kvCacheType: "f16",
} as const;

/**
 * The range of each numeric setting: the config validates the environment against these, and
 * LocalBackend its options (a bench or test builds one directly), so both refuse the same values.
 */
export const LOCAL_BOUNDS = {
  loraScale: { min: 0, max: 10 },
  threads: { min: 1, max: 1024 },
  gpuLayers: { min: 0, max: 10_000 },
  contextSize: { min: 256, max: 1_048_576 },
  sequences: { min: 1, max: 64 },
  loadTimeoutS: { min: 1, max: 86_400 },
  stateCacheMb: { min: 0, max: 16 * 1024 * 1024 },
  stateSaveTurns: { min: 0, max: 10_000 },
} as const satisfies Record<string, { min: number; max: number }>;

/** LLAMA_KV_CACHE_TYPE: the KV cache's element type (node-llama-cpp's experimentalKvCacheKeyType/ValueType). */
export const KV_CACHE_TYPES = ["f16", "q8_0"] as const;
export type KvCacheType = (typeof KV_CACHE_TYPES)[number];

/** LLAMA_BUILD: node-llama-cpp's prebuilt binary, or the build `npm run build:llama` made for this machine. */
export const LLAMA_BUILDS = ["prebuilt", "native"] as const;
export type LlamaBuildChoice = (typeof LLAMA_BUILDS)[number];
