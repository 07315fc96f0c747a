import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { castSpellings, type CastMember } from "../core/cast.ts";
import type { Persona } from "../core/persona.ts";
import { ConfigError, formatIssues } from "./errors.ts";

/** config/friend.json: the non-secret settings, validated at start-up. */
export const DEFAULT_SETTINGS_PATH = fileURLToPath(new URL("../../config/friend.json", import.meta.url));

const personaSchema: z.ZodType<Persona> = z.strictObject({
  name: z.string().regex(/^[A-Z][A-Za-z]{1,31}$/, "must be one capitalised word, e.g. Friend"),
  /** `{user}` is replaced by the display name of whoever Friend is answering. */
  systemPrompt: z.string().min(1),
  /** The fixed partner name the original experiment trained with; used by the dataset builder. */
  trainingPartner: z.string().min(1),
  fallbackReply: z.string().min(1).max(2000),
  errorReply: z.string().min(1).max(2000),
  /** Sent once to a user who floods; after it they are ignored until their rate drops. */
  slowDownReply: z.string().min(1).max(2000),
});

/** One capitalised word: it stands before a colon in prompts and is sent as OpenAI's `name`. */
const CHARACTER_NAME = /^[A-Z][A-Za-z]{1,31}$/;

const castMemberSchema: z.ZodType<CastMember> = z.strictObject({
  name: z.string().regex(CHARACTER_NAME, "must be one capitalised word, e.g. Joey"),
  aliases: z.array(z.string().trim().min(1).max(64).regex(/^[^:\n()[\]*_`]+$/, "must not hold a colon, brackets, markdown or a line break")).max(20),
  /** Discord takes an https image URL as a webhook's avatar. */
  avatarUrl: z.url({ protocol: /^https$/ }).optional(),
  description: z.string().max(500),
});

/** Every cast member is told apart from the others by each of their spellings. */
const castSchema = z
  .array(castMemberSchema)
  .min(1)
  .max(25) // Discord shows at most 25 autocomplete choices
  .superRefine((cast, ctx) => {
    const owner = new Map<string, string>();
    cast.forEach((member, i) => {
      for (const spelling of castSpellings(member)) {
        const key = spelling.toLowerCase();
        const other = owner.get(key);
        if (other !== undefined && other !== member.name) ctx.addIssue({ code: "custom", path: [i, "name"], message: `"${spelling}" already names ${other}` });
        owner.set(key, member.name);
      }
    });
  });

const windowSchema = z.strictObject({
  maxTurns: z.int().min(2).max(1000),
  maxTokens: z.int().min(64).max(100_000),
  /** When a bound is crossed, old turns are dropped down to this fraction of it in one go (keeps KV caches reusable). */
  trimToFraction: z.number().gt(0).max(1),
  /** Longer user messages are cut to this many characters before they enter the window. */
  maxInputChars: z.int().min(100).max(100_000),
  /** Longer user messages are cut to this many cl100k tokens (and the reply says so), so one message never fills the prompt. */
  maxInputTokens: z.int().min(16).max(100_000),
}).refine((w) => w.maxInputTokens < w.maxTokens, { message: "maxInputTokens must be less than maxTokens", path: ["maxInputTokens"] });

const generationSchema = z.strictObject({
  maxTokens: z.int().min(1).max(4096),
  temperature: z.number().min(0).max(2),
  topP: z.number().gt(0).max(1),
  timeoutMs: z.int().min(1000).max(600_000),
  /** Deadline for the first text of a reply: a hung backend frees its slot long before `timeoutMs`. */
  firstTextTimeoutMs: z.int().min(1000).max(600_000),
  /** How long a turn waits for its backend to get ready (a download, a model load) before saying so. */
  prepareTimeoutMs: z.int().min(1000).max(3_600_000),
  maxRetries: z.int().min(0).max(10),
  stream: z.boolean(),
  streamEditIntervalMs: z.int().min(250).max(60_000),
});

const limitsSchema = z.strictObject({
  concurrency: z.int().min(1).max(64),
  maxPendingPerChannel: z.int().min(1).max(1000),
  maxActiveChannels: z.int().min(1).max(1_000_000),
  /** Deadline for posting a finished reply (a long Discord rate limit must not hold a channel). */
  postTimeoutMs: z.int().min(1000).max(600_000),
  /** A reply that waits this long for a free backend tells its channel once. */
  slowNoticeMs: z.int().min(500).max(600_000),
});

export const settingsSchema = z
  .strictObject({
    persona: personaSchema,
    /** Who Friend can speak as (/persona); the persona's own entry is the default. */
    cast: castSchema,
    window: windowSchema,
    generation: generationSchema,
    limits: limitsSchema,
  })
  .refine((s) => s.cast.some((m) => m.name === s.persona.name), { message: "must have an entry named as persona.name", path: ["cast"] });

export type Settings = z.infer<typeof settingsSchema>;
export type WindowSettings = Settings["window"];
export type GenerationSettings = Settings["generation"];

/** Reads and validates a settings file; every problem is named in one ConfigError. */
export function loadSettings(path: string = DEFAULT_SETTINGS_PATH): Settings {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new ConfigError([`${path}: cannot read settings (${(err as Error).message})`]);
  }
  const parsed = settingsSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(formatIssues(parsed.error, path));
  return parsed.data;
}

/**
 * The persona's system prompt addressed to one person. The name lands in the system role, so
 * callers pass a safe short form, never a raw display name (see personaPrompt in prompt.ts).
 */
export function systemPromptFor(persona: Persona, userName: string): string {
  return persona.systemPrompt.replaceAll("{user}", userName);
}
