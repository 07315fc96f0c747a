import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import { z } from "zod";
import { BACKEND_NAMES } from "../core/backend.ts";
import { parseModelSource } from "../core/model-source.ts";
import { KV_CACHE_TYPES, LLAMA_BUILDS, LOCAL_BOUNDS, LOCAL_DEFAULTS, type KvCacheType, type LlamaBuildChoice } from "./local-defaults.ts";
import { ConfigError, formatIssues } from "./errors.ts";
import { loadSettings, type Settings } from "./settings.ts";

/** Where the LoRA adapter is looked for when LLAMA_LORA_PATH is not set at all. */
export const DEFAULT_LORA_PATH = LOCAL_DEFAULTS.loraPath;

const snowflake = z.string().regex(/^\d{17,20}$/, "must be a Discord id (17–20 digits)");
const idList = z
  .string()
  .default("")
  .transform((s) => s.split(",").map((id) => id.trim()).filter(Boolean))
  .pipe(z.array(snowflake))
  .transform((ids) => new Set(ids));
const flag = z
  .enum(["true", "false", "1", "0", "yes", "no", "on", "off"], { error: "must be true or false" })
  .transform((v) => ["true", "1", "yes", "on"].includes(v));
const optional = <T extends z.ZodType>(schema: T) => z.preprocess((v) => (v === "" ? undefined : v), schema.optional());
/** A file path, a Hugging Face URI or an http(s) URL (see model-source.ts). */
const modelSource = z.string().superRefine((value, ctx) => {
  try {
    parseModelSource(value);
  } catch (err) {
    ctx.addIssue({ code: "custom", message: `must be a GGUF file path, a Hugging Face URI (hf:user/repo:Q4_K_M) or an http(s) URL: ${(err as Error).message}` });
  }
});
const int = (min: number, max: number) =>
  z.coerce
    .number({ error: "must be a number" })
    .int("must be a whole number")
    .min(min, `must be at least ${min}`)
    .max(max, `must be at most ${max}`);

const bounded = (name: keyof typeof LOCAL_BOUNDS) => int(LOCAL_BOUNDS[name].min, LOCAL_BOUNDS[name].max);

/** Every environment variable Friend reads. The README's table is written from this. */
const envSchema = z.object({
  DISCORD_TOKEN: optional(z.string()),
  DISCORD_API_URL: z.url({ error: "must be a URL like https://discord.com/api" }).default("https://discord.com/api"),
  DISCORD_GUILD_ID: optional(snowflake),
  FRIEND_CHANNELS: idList,
  FRIEND_ALLOW_CHANNELS: idList,
  FRIEND_DENY_CHANNELS: idList,
  FRIEND_ALLOW_DMS: flag.default(true),
  FRIEND_BACKEND: z.enum(BACKEND_NAMES, { error: `must be one of ${BACKEND_NAMES.join(", ")}` }).default("openai"),
  FRIEND_USER_MESSAGES_PER_MINUTE: int(1, 1_000_000).default(12),
  OPENAI_API_KEY: optional(z.string()),
  OPENAI_BASE_URL: optional(z.url({ error: "must be a URL like https://api.openai.com/v1" })),
  OPENAI_MODEL: optional(z.string()),
  FRIEND_DB_PATH: z.string().min(1).default("data/friend.db"),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  LLAMA_MODEL_PATH: optional(modelSource),
  LLAMA_LORA_PATH: z.literal("").or(modelSource).optional(),
  LLAMA_LORA_SCALE: z.coerce
    .number({ error: "must be a number" })
    .min(LOCAL_BOUNDS.loraScale.min, `must be at least ${LOCAL_BOUNDS.loraScale.min}`)
    .max(LOCAL_BOUNDS.loraScale.max, `must be at most ${LOCAL_BOUNDS.loraScale.max}`)
    .default(LOCAL_DEFAULTS.loraScale),
  LLAMA_THREADS: bounded("threads").default(availableParallelism()),
  LLAMA_GPU_LAYERS: z.union([z.literal("auto"), bounded("gpuLayers")], { error: "must be auto or a number of layers" }).default(LOCAL_DEFAULTS.gpuLayers),
  LLAMA_CONTEXT_SIZE: bounded("contextSize").default(LOCAL_DEFAULTS.contextSize),
  LLAMA_SEQUENCES: bounded("sequences").default(LOCAL_DEFAULTS.sequences),
  LLAMA_LOAD_TIMEOUT_S: bounded("loadTimeoutS").default(LOCAL_DEFAULTS.loadTimeoutS),
  LLAMA_STATE_CACHE_MB: bounded("stateCacheMb").default(LOCAL_DEFAULTS.stateCacheMb),
  LLAMA_STATE_SAVE_TURNS: bounded("stateSaveTurns").default(LOCAL_DEFAULTS.stateSaveTurns),
  LLAMA_STATE_DIR: optional(z.string().min(1)),
  LLAMA_KV_CACHE_TYPE: z.enum(KV_CACHE_TYPES, { error: `must be one of ${KV_CACHE_TYPES.join(", ")}` }).default(LOCAL_DEFAULTS.kvCacheType),
  LLAMA_DOWNLOAD_STALL_S: int(1, 86_400).default(LOCAL_DEFAULTS.downloadStallS),
  LLAMA_DOWNLOAD_TIMEOUT_S: int(1, 7 * 86_400).default(LOCAL_DEFAULTS.downloadTimeoutS),
  HF_TOKEN: optional(z.string()),
  LLAMA_BUILD: z.enum(LLAMA_BUILDS, { error: `must be one of ${LLAMA_BUILDS.join(", ")}` }).default(LOCAL_DEFAULTS.build),
  FRIEND_HTTP_PORT: optional(int(0, 65_535)),
  FRIEND_HTTP_HOST: z.string().min(1).default("127.0.0.1"),
  FRIEND_SHUTDOWN_GRACE_MS: int(0, 600_000).default(8000),
  FRIEND_CATCHUP_MAX_AGE_S: int(0, 7 * 24 * 3600).default(900),
  FRIEND_RETENTION_DAYS: int(1, 36_500).default(30),
});

/** The names of every variable Friend reads. */
export const ENV_VARIABLES: readonly string[] = Object.keys(envSchema.shape);

export interface LocalModelConfig {
  /** A file path, a Hugging Face URI or an http(s) URL. */
  modelPath: string;
  loraPath?: string;
  loraScale: number;
  threads: number;
  gpuLayers: "auto" | number;
  contextSize: number;
  sequences: number;
  loadTimeoutMs: number;
  /** A download that receives no new bytes for this long fails. */
  downloadStallMs: number;
  /** The longest a whole download may take. */
  downloadTimeoutMs: number;
  /** LLAMA_STATE_CACHE_MB: disk for saved channel states, in MiB; 0 saves none. */
  stateCacheMb: number;
  /** LLAMA_STATE_SAVE_TURNS: also save a channel's state every this many turns; 0: only at eviction and stop. */
  stateSaveTurns: number;
  /** LLAMA_STATE_DIR: where saved channel states go; undefined saves none (the database is `:memory:`). */
  stateDir?: string;
  kvCacheType: KvCacheType;
  /** HF_TOKEN, for gated Hugging Face repositories; a secret. */
  huggingFaceToken?: string;
  /** Not from the environment (tests set them): where downloads go, and the Hugging Face endpoint. */
  modelsDir?: string;
  adaptersDir?: string;
  huggingFaceEndpoint?: string;
  build: LlamaBuildChoice;
}

export interface OpenAIConfig {
  apiKey?: string;
  baseURL?: string;
  model?: string;
}

export interface Config {
  discord: {
    token: string;
    apiUrl: string;
    guildId?: string;
    /** Channels where Friend answers every message. */
    channels: Set<string>;
    /** When not empty, the only server channels (besides `channels`) where Friend answers. */
    allowChannels: Set<string>;
    /** Channels where Friend never answers. */
    denyChannels: Set<string>;
    allowDms: boolean;
    /** Not from the environment (tests set it): how long /model waits for a backend before replying that it carries on in the background. */
    interactionWaitMs?: number;
  };
  defaultBackend: (typeof BACKEND_NAMES)[number];
  openai: OpenAIConfig;
  local: LocalModelConfig;
  dbPath: string;
  logLevel: string;
  userMessagesPerMinute: number;
  http?: { port: number; host: string };
  /** On SIGTERM, how long replies in flight may take to finish and be posted. */
  shutdownGraceMs: number;
  /** At start-up, unanswered messages younger than this are answered; older ones are dropped. */
  catchUpMaxAgeMs: number;
  /** Turns older than this many days are forgotten (at start-up and hourly). */
  retentionDays: number;
  settings: Settings;
}

/** Builds the one validated Config from the environment and config/ files, or throws ConfigError naming every problem. */
export function loadConfig(
  env: NodeJS.ProcessEnv = process.env,
  settingsPath?: string,
  /** `friend chat` talks in the terminal: it needs no Discord variables. */
  { discord = true }: { discord?: boolean } = {},
): Config {
  const problems: string[] = [];
  const parsed = envSchema.safeParse(env);
  if (discord && !env.DISCORD_TOKEN) problems.push("DISCORD_TOKEN: is required: the bot token from the Discord developer portal");
  if (!parsed.success) problems.push(...formatIssues(parsed.error));
  let settings: Settings | undefined;
  try {
    settings = loadSettings(settingsPath);
  } catch (err) {
    if (err instanceof ConfigError) problems.push(...err.problems);
    else throw err;
  }
  if (parsed.success && parsed.data.FRIEND_BACKEND === "openai") {
    if (!parsed.data.OPENAI_MODEL) problems.push("OPENAI_MODEL: is required when FRIEND_BACKEND=openai (e.g. ft:gpt-3.5-turbo-0125:org::id)");
    if (!parsed.data.OPENAI_API_KEY) problems.push("OPENAI_API_KEY: is required when FRIEND_BACKEND=openai (any value for a local server)");
  }
  if (problems.length > 0 || !parsed.success || !settings) throw new ConfigError(problems);

  const e = parsed.data;
  return {
    discord: {
      token: e.DISCORD_TOKEN ?? "",
      apiUrl: e.DISCORD_API_URL.replace(/\/+$/, ""),
      guildId: e.DISCORD_GUILD_ID,
      channels: e.FRIEND_CHANNELS,
      allowChannels: e.FRIEND_ALLOW_CHANNELS,
      denyChannels: e.FRIEND_DENY_CHANNELS,
      allowDms: e.FRIEND_ALLOW_DMS,
    },
    defaultBackend: e.FRIEND_BACKEND,
    openai: { apiKey: e.OPENAI_API_KEY, baseURL: e.OPENAI_BASE_URL, model: e.OPENAI_MODEL },
    local: {
      // Unset: a model put in place by hand under the old default name, else the download.
      modelPath: e.LLAMA_MODEL_PATH ?? (existsSync(LOCAL_DEFAULTS.legacyModelPath) ? LOCAL_DEFAULTS.legacyModelPath : LOCAL_DEFAULTS.modelSource),
      // Unset: use the conventional adapter when present. Set but empty: the base model alone.
      loraPath: e.LLAMA_LORA_PATH === undefined ? (existsSync(DEFAULT_LORA_PATH) ? DEFAULT_LORA_PATH : undefined) : e.LLAMA_LORA_PATH || undefined,
      loraScale: e.LLAMA_LORA_SCALE,
      threads: e.LLAMA_THREADS,
      gpuLayers: e.LLAMA_GPU_LAYERS,
      contextSize: e.LLAMA_CONTEXT_SIZE,
      sequences: e.LLAMA_SEQUENCES,
      loadTimeoutMs: e.LLAMA_LOAD_TIMEOUT_S * 1000,
      downloadStallMs: e.LLAMA_DOWNLOAD_STALL_S * 1000,
      downloadTimeoutMs: e.LLAMA_DOWNLOAD_TIMEOUT_S * 1000,
      stateCacheMb: e.LLAMA_STATE_CACHE_MB,
      stateSaveTurns: e.LLAMA_STATE_SAVE_TURNS,
      // Next to the database by default: a database kept in memory keeps no states on disk either.
      stateDir: e.LLAMA_STATE_DIR ?? (e.FRIEND_DB_PATH === ":memory:" ? undefined : join(dirname(e.FRIEND_DB_PATH), LOCAL_DEFAULTS.stateDirName)),
      kvCacheType: e.LLAMA_KV_CACHE_TYPE,
      huggingFaceToken: e.HF_TOKEN,
      build: e.LLAMA_BUILD,
    },
    dbPath: e.FRIEND_DB_PATH,
    logLevel: e.LOG_LEVEL,
    userMessagesPerMinute: e.FRIEND_USER_MESSAGES_PER_MINUTE,
    http: e.FRIEND_HTTP_PORT !== undefined ? { port: e.FRIEND_HTTP_PORT, host: e.FRIEND_HTTP_HOST } : undefined,
    shutdownGraceMs: e.FRIEND_SHUTDOWN_GRACE_MS,
    catchUpMaxAgeMs: e.FRIEND_CATCHUP_MAX_AGE_S * 1000,
    retentionDays: e.FRIEND_RETENTION_DAYS,
    settings,
  };
}
