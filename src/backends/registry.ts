import type { Logger } from "pino";
import type { Config } from "../config/env.ts";
import type { Backend, BackendName } from "../core/backend.ts";
import { OpenAIBackend, type OpenAIBackendOptions } from "./openai.ts";

/** The OpenAI backend's options from config: one place, for the bot and for `friend eval`. */
export function openAIOptions(config: Config, logger: Logger): OpenAIBackendOptions {
  const { generation, window } = config.settings;
  return {
    ...config.openai,
    timeoutMs: generation.timeoutMs,
    maxRetries: generation.maxRetries,
    stream: generation.stream,
    promptBudget: window.maxTokens,
    trimToFraction: window.trimToFraction,
    logger,
  };
}

/** Builds the local backend on first use, so Friend starts without loading a model nobody asked for. */
export type LocalBackendFactory = () => Backend;

/** The backends Friend can route a channel to, created on first use. */
export class Backends {
  readonly openai: OpenAIBackend;
  #local: Backend | undefined;

  constructor(
    config: Config,
    logger: Logger,
    private readonly makeLocal: LocalBackendFactory,
  ) {
    this.openai = new OpenAIBackend(openAIOptions(config, logger));
  }

  get(name: BackendName): Backend {
    if (name === "openai") return this.openai;
    this.#local ??= this.makeLocal();
    return this.#local;
  }

  /** The backends that exist so far (a local model that was never asked for is not loaded). */
  created(): Backend[] {
    return this.#local ? [this.openai, this.#local] : [this.openai];
  }

  /** Why `name` cannot serve right now, or null. For `local` this loads the model (once). */
  async unavailableReason(name: BackendName): Promise<string | null> {
    if (name === "openai") return this.openai.unavailableReason();
    try {
      await this.get("local").prepare?.();
      return null;
    } catch (err) {
      return (err as Error).message;
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.created().map((b) => b.close()));
  }
}
