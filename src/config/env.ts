import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { z } from "zod";
import { BACKEND_NAMES } from "../backends/backend.ts";
import { LLAMA_BUILDS, type LlamaBuildChoice } from "../backends/local/llama-build.ts";
import { ConfigError, formatIssues } from "./errors.ts";
import { loadSettings, type Settings } from "./settings.ts";

/** Where the LoRA adapter is looked for when LLAMA_LORA_PATH is not set at all. */
export const DEFAULT_LORA_PATH = "adapters/friends-lora.gguf";

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
const int = (min: number, max: number) =>
  z.coerce
    .number({ error: "must be a number" })
    .int("must be a whole number")
    .min(min, `must be at least ${min}`)
    .max(max, `must be at most ${max}`);

/** Every environment variable Friend reads. The README's table is written from this. */
const envSchema = z.object({
  DISCORD_TOKEN: z.string({ error: "is required: the bot token from the Discord developer portal" }).min(1, "is required: the bot token from the Discord developer portal"),
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
  LLAMA_MODEL_PATH: z.string().min(1).default("models/llama-2-7b.Q4_K_M.gguf"),
  LLAMA_LORA_PATH: z.string().optional(),
  LLAMA_LORA_SCALE: z.coerce.number({ error: "must be a number" }).min(0, "must be at least 0").max(10, "must be at most 10").default(1),
  LLAMA_THREADS: int(1, 1024).default(availableParallelism()),
  LLAMA_GPU_LAYERS: z.union([z.literal("auto"), int(0, 10_000)], { error: "must be auto or a number of layers" }).default("auto"),
  LLAMA_CONTEXT_SIZE: int(256, 1_048_576).default(4096),
  LLAMA_SEQUENCES: int(1, 64).default(4),
  LLAMA_BUILD: z.enum(LLAMA_BUILDS, { error: `must be one of ${LLAMA_BUILDS.join(", ")}` }).default("prebuilt"),
  FRIEND_HTTP_PORT: optional(int(0, 65_535)),
  FRIEND_HTTP_HOST: z.string().min(1).default("127.0.0.1"),
});

/** The names of every variable Friend reads. */
export const ENV_VARIABLES: readonly string[] = Object.keys(envSchema.shape);

export interface LocalModelConfig {
  modelPath: string;
  loraPath?: string;
  loraScale: number;
  threads: number;
  gpuLayers: "auto" | number;
  contextSize: number;
  sequences: number;
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
  };
  defaultBackend: (typeof BACKEND_NAMES)[number];
  openai: OpenAIConfig;
  local: LocalModelConfig;
  dbPath: string;
  logLevel: string;
  userMessagesPerMinute: number;
  http?: { port: number; host: string };
  settings: Settings;
}

/** Builds the one validated Config from the environment and config/ files, or throws ConfigError naming every problem. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, settingsPath?: string): Config {
  const problems: string[] = [];
  const parsed = envSchema.safeParse(env);
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
      token: e.DISCORD_TOKEN,
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
      modelPath: e.LLAMA_MODEL_PATH,
      // Unset: use the conventional adapter when present. Set but empty: the base model alone.
      loraPath: e.LLAMA_LORA_PATH === undefined ? (existsSync(DEFAULT_LORA_PATH) ? DEFAULT_LORA_PATH : undefined) : e.LLAMA_LORA_PATH || undefined,
      loraScale: e.LLAMA_LORA_SCALE,
      threads: e.LLAMA_THREADS,
      gpuLayers: e.LLAMA_GPU_LAYERS,
      contextSize: e.LLAMA_CONTEXT_SIZE,
      sequences: e.LLAMA_SEQUENCES,
      build: e.LLAMA_BUILD,
    },
    dbPath: e.FRIEND_DB_PATH,
    logLevel: e.LOG_LEVEL,
    userMessagesPerMinute: e.FRIEND_USER_MESSAGES_PER_MINUTE,
    http: e.FRIEND_HTTP_PORT !== undefined ? { port: e.FRIEND_HTTP_PORT, host: e.FRIEND_HTTP_HOST } : undefined,
    settings,
  };
}
