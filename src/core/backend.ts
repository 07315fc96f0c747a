import type { CastMember } from "./cast.ts";
import type { Persona } from "./persona.ts";
import type { Turn } from "./turn.ts";

export const BACKEND_NAMES = ["openai", "local"] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

/** Everything a backend needs to produce Friend's next line in one channel. */
export interface GenerateRequest {
  /** Backends that keep per-channel state (the local KV cache) key it by this. */
  channelId: string;
  /** Who speaks this turn: the channel's /persona, as a persona. */
  persona: Persona;
  /** The configured cast, whose labels the prompt guards against in users' text. */
  cast: readonly CastMember[];
  /** The channel window, oldest first. The last turn is what Friend answers. */
  turns: readonly Turn[];
  /** Stop sequences, most likely first, each starting with "\n" (e.g. "\nRoss:"). */
  stop: readonly string[];
  maxTokens: number;
  temperature: number;
  topP: number;
  /** Fixes the sampling (friend eval's --seed); unset, each generation samples afresh. */
  seed?: number;
  signal: AbortSignal;
}

/**
 * Why a generation ended: the end-of-text token, a stop sequence, or the token limit.
 * `stopOrEos`: the server said "stop" without saying whether a stop sequence matched (the OpenAI API).
 */
export type StopReason = "eos" | "stop" | "maxTokens" | "stopOrEos";

/** Counters a backend reports once a generation ends, for logs and metrics. */
export interface GenerationStats {
  promptTokens?: number;
  completionTokens?: number;
  /** Tokens actually evaluated for the prompt (less than promptTokens when a cache was reused). */
  evaluatedPromptTokens?: number;
  stopReason?: StopReason;
}

/** A model that continues the conversation as Friend. */
export interface Backend {
  readonly name: BackendName;
  /** Human-readable model description for /status and logs, e.g. the model id or file names. */
  describe(): BackendInfo;
  /**
   * Streams raw model text for the next Friend turn. The text is NOT cleaned: callers run it
   * through the reply cleaner. Stops promptly when `request.signal` aborts. Throws BackendError.
   */
  generate(request: GenerateRequest): AsyncGenerator<string, GenerationStats | void, undefined>;
  /**
   * Forgets any per-channel state (the local KV cache, in memory and saved on disk); the window
   * itself lives elsewhere. Call it whenever the start of a channel's window changes other than by
   * new turns: /reset, a forgotten or deleted message.
   */
  resetChannel?(channelId: string): void;
  /**
   * Saves per-channel state that a restart would lose (the local KV caches), the most recently
   * answered channels first, until `deadlineAt` (ms since the epoch). Called when a graceful stop
   * begins, alongside the replies in flight; a channel still generating is saved once it is done.
   */
  saveState?(deadlineAt: number): Promise<void>;
  /** Loads what must be loaded before the first reply; safe to call more than once. */
  prepare?(): Promise<void>;
  close(): Promise<void>;
}

export interface BackendInfo {
  backend: BackendName;
  model: string;
  adapter?: string;
  loaded: boolean;
  /**
   * While the backend gets ready (a download, a load): what it is doing, for /status and the
   * /model reply. `text` is e.g. "downloading 37% of model.gguf (1.5 GB of 4.1 GB)".
   */
  progress?: { step: "downloading" | "importing" | "loading"; text: string };
  /** Channels' saved KV states on disk (local, once loaded, when saving is on): how many, their size and the budget. */
  savedStates?: { files: number; bytes: number; budgetBytes: number };
  /** The inference binary, once loaded (local: which llama.cpp build runs, e.g. "native build (cpu, GGML_NATIVE=ON)"). */
  binary?: string;
}

/** `too_long`: the newest message does not fit the model's prompt even on its own. */
export type BackendErrorKind = "timeout" | "rate_limit" | "server" | "connection" | "auth" | "bad_request" | "too_long" | "load" | "aborted" | "unknown";

/** A backend failure after the backend's own retries, classified for logs and metrics. */
export class BackendError extends Error {
  constructor(
    readonly kind: BackendErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "BackendError";
  }
}
