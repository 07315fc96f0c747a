import OpenAI from "openai";
import type { Logger } from "pino";
import type { OpenAIConfig } from "../config/env.ts";
import { renderChat } from "../conversation/prompt.ts";
import { BackendError, type Backend, type BackendErrorKind, type BackendInfo, type GenerateRequest, type GenerationStats } from "./backend.ts";

/** The chat-completions API accepts at most this many stop sequences. */
export const OPENAI_MAX_STOP = 4;

export interface OpenAIBackendOptions extends OpenAIConfig {
  /** Whole-request deadline, streaming included. */
  timeoutMs: number;
  /** The SDK's own retries on connection errors, 408, 409, 429 and 5xx (it honours retry-after). */
  maxRetries: number;
  stream: boolean;
  logger: Logger;
}

/** Classifies an SDK error; everything after the SDK's own retries ends up here. */
export function classifyOpenAIError(err: unknown, timedOut: boolean): BackendErrorKind {
  if (timedOut || err instanceof OpenAI.APIConnectionTimeoutError) return "timeout";
  if (err instanceof OpenAI.APIUserAbortError) return "aborted";
  if (err instanceof OpenAI.APIConnectionError) return "connection";
  if (err instanceof OpenAI.RateLimitError) return "rate_limit";
  if (err instanceof OpenAI.AuthenticationError || err instanceof OpenAI.PermissionDeniedError) return "auth";
  if (err instanceof OpenAI.InternalServerError) return "server";
  if (err instanceof OpenAI.APIError) return err.status !== undefined && err.status >= 500 ? "server" : "bad_request";
  if (err instanceof Error && err.name === "AbortError") return "aborted";
  return "unknown";
}

/**
 * The OpenAI fine-tuned model, or any OpenAI-compatible server (vLLM serving a LoRA, llama.cpp
 * server, Ollama) through OPENAI_BASE_URL.
 */
export class OpenAIBackend implements Backend {
  readonly name = "openai" as const;
  readonly #client: OpenAI;

  constructor(private readonly options: OpenAIBackendOptions) {
    this.#client = new OpenAI({
      // The SDK insists on a key even for local servers that ignore it.
      apiKey: options.apiKey || "unused",
      baseURL: options.baseURL,
      timeout: options.timeoutMs,
      maxRetries: options.maxRetries,
    });
  }

  describe(): BackendInfo {
    return { backend: "openai", model: this.options.model ?? "(OPENAI_MODEL not set)", loaded: true };
  }

  /** Why this backend cannot serve, or null when it can. */
  unavailableReason(): string | null {
    if (!this.options.model) return "OPENAI_MODEL is not set";
    if (!this.options.apiKey) return "OPENAI_API_KEY is not set";
    return null;
  }

  async *generate(request: GenerateRequest): AsyncGenerator<string, GenerationStats, undefined> {
    const reason = this.unavailableReason();
    if (reason) throw new BackendError("bad_request", `The openai backend is not configured: ${reason}.`);
    let timedOut = false;
    const deadline = new AbortController();
    const timer = setTimeout(() => {
      timedOut = true;
      deadline.abort();
    }, this.options.timeoutMs);
    const signal = AbortSignal.any([request.signal, deadline.signal]);
    const params = {
      model: this.options.model!,
      messages: renderChat(request.persona, request.turns),
      max_tokens: request.maxTokens,
      temperature: request.temperature,
      top_p: request.topP,
      stop: request.stop.slice(0, OPENAI_MAX_STOP),
    };
    try {
      if (!this.options.stream) {
        const completion = await this.#client.chat.completions.create(params, { signal });
        const text = completion.choices[0]?.message?.content ?? "";
        if (text) yield text;
        return { promptTokens: completion.usage?.prompt_tokens, completionTokens: completion.usage?.completion_tokens };
      }
      const stream = await this.#client.chat.completions.create(
        { ...params, stream: true, stream_options: { include_usage: true } },
        { signal },
      );
      const stats: GenerationStats = {};
      for await (const chunk of stream) {
        const text = chunk.choices[0]?.delta?.content;
        if (text) yield text;
        if (chunk.usage) {
          stats.promptTokens = chunk.usage.prompt_tokens;
          stats.completionTokens = chunk.usage.completion_tokens;
        }
      }
      return stats;
    } catch (err) {
      if (err instanceof BackendError) throw err;
      const kind = classifyOpenAIError(err, timedOut);
      const detail = timedOut ? `no complete answer within ${this.options.timeoutMs} ms` : (err as Error).message;
      throw new BackendError(kind, `OpenAI request failed (${kind}): ${detail}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {}
}
