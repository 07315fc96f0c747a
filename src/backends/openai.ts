import OpenAI from "openai";
import type { Logger } from "pino";
import type { OpenAIConfig } from "../config/env.ts";
import { renderChat } from "./prompt.ts";
import { countTokens } from "../core/tokens.ts";
import type { Turn } from "../core/turn.ts";
import { fitPrompt } from "./prompt-fit.ts";
import { BackendError, type Backend, type BackendErrorKind, type BackendInfo, type GenerateRequest, type GenerationStats, type StopReason } from "../core/backend.ts";

/** The chat-completions API accepts at most this many stop sequences. */
export const OPENAI_MAX_STOP = 4;

export interface OpenAIBackendOptions extends OpenAIConfig {
  /** The SDK's deadline for one attempt; the conversation holds the whole reply to its own deadline. */
  timeoutMs: number;
  /** The SDK's own retries on connection errors, 408, 409, 429 and 5xx (it honours retry-after). */
  maxRetries: number;
  stream: boolean;
  /** Most cl100k tokens of conversation in one request (config's window.maxTokens). */
  promptBudget: number;
  /** When the budget is crossed, old turns go down to this fraction of it in one chunk. */
  trimToFraction: number;
  logger: Logger;
}

/** Per-message framing on top of a turn's text. */
const TURN_OVERHEAD_TOKENS = 4;
/** Channels whose prompt start is remembered; the oldest are forgotten past this. */
const REMEMBERED_CHANNELS = 10_000;

/** A chat prompt's size in tokens, from the counts stored with each turn. */
function chatSize(turns: readonly Turn[]): { length: number } {
  let length = 0;
  for (const t of turns) length += (t.tokens ?? countTokens(t.text)) + TURN_OVERHEAD_TOKENS;
  return { length };
}

/**
 * A streamed chunk carries about one token; a server that ignores `max_tokens` is still held to it.
 * Characters are capped too, for servers that send long chunks.
 */
const MAX_CHARS_PER_TOKEN = 16;

/** Classifies an SDK error; everything after the SDK's own retries ends up here. */
export function classifyOpenAIError(err: unknown): BackendErrorKind {
  if (err instanceof OpenAI.APIConnectionTimeoutError) return "timeout";
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
  /** Per channel, `at` of the oldest turn sent last time: the next prompt starts there while it fits (a provider's prompt cache stays warm). */
  readonly #firstTurnAt = new Map<string, number>();

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
    const { signal, channelId } = request;
    const fit = fitPrompt({
      turns: request.turns,
      firstTurnAt: this.#firstTurnAt.get(channelId),
      budget: this.options.promptBudget,
      trimToFraction: this.options.trimToFraction,
      encode: chatSize,
    });
    if (!fit) throw new BackendError("too_long", `The newest message is over the OpenAI prompt budget of ${this.options.promptBudget} tokens (window.maxTokens).`);
    this.#rememberStart(channelId, request.turns[fit.start]!.at);
    const params = {
      model: this.options.model!,
      messages: renderChat(request.persona, request.turns.slice(fit.start), request.cast),
      max_tokens: request.maxTokens,
      temperature: request.temperature,
      top_p: request.topP,
      stop: request.stop.slice(0, OPENAI_MAX_STOP),
      ...(request.seed !== undefined ? { seed: request.seed } : {}),
    };
    const stats: GenerationStats = {};
    try {
      if (!this.options.stream) {
        const completion = await this.#client.chat.completions.create(params, { signal });
        const text = completion.choices[0]?.message?.content ?? "";
        throwIfAborted(signal);
        if (text) yield text.slice(0, request.maxTokens * MAX_CHARS_PER_TOKEN);
        return {
          promptTokens: completion.usage?.prompt_tokens,
          completionTokens: completion.usage?.completion_tokens,
          stopReason: stopReasonOf(completion.choices[0]?.finish_reason),
        };
      }
      const stream = await this.#client.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } }, { signal });
      let chunks = 0;
      let chars = 0;
      for await (const chunk of stream) {
        const text = chunk.choices[0]?.delta?.content;
        if (text) {
          chunks++;
          chars += text.length;
          yield text;
          // The server ignored max_tokens: end the reply there, as the API would have.
          if (chunks >= request.maxTokens || chars >= request.maxTokens * MAX_CHARS_PER_TOKEN) {
            stream.controller.abort();
            return { ...stats, completionTokens: chunks, stopReason: "maxTokens" };
          }
        }
        const finish = chunk.choices[0]?.finish_reason;
        if (finish) stats.stopReason = stopReasonOf(finish);
        if (chunk.usage) {
          stats.promptTokens = chunk.usage.prompt_tokens;
          stats.completionTokens = chunk.usage.completion_tokens;
        }
      }
      // The SDK ends a stream quietly when its signal aborts: that is a cut-off reply, not a finished one.
      throwIfAborted(signal);
      return stats;
    } catch (err) {
      if (err instanceof BackendError) throw err;
      if (signal.aborted) throw abortError(signal);
      const kind = classifyOpenAIError(err);
      throw new BackendError(kind, `OpenAI request failed (${kind}): ${(err as Error).message}`, { cause: err });
    }
  }

  resetChannel(channelId: string): void {
    this.#firstTurnAt.delete(channelId);
  }

  async close(): Promise<void> {}

  #rememberStart(channelId: string, at: number): void {
    this.#firstTurnAt.delete(channelId);
    this.#firstTurnAt.set(channelId, at);
    if (this.#firstTurnAt.size > REMEMBERED_CHANNELS) this.#firstTurnAt.delete(this.#firstTurnAt.keys().next().value!);
  }
}

/** "stop" covers both a matched stop sequence and the model's own end: the API does not say which. */
function stopReasonOf(finishReason: string | null | undefined): StopReason | undefined {
  if (finishReason === "length") return "maxTokens";
  if (finishReason === "stop") return "stopOrEos";
  return undefined;
}

/** The request's signal carries why it stopped (a deadline, a shutdown) as a BackendError when the conversation set one. */
function abortError(signal: AbortSignal): BackendError {
  const reason: unknown = signal.reason;
  return reason instanceof BackendError ? reason : new BackendError("aborted", "The OpenAI request was stopped.", { cause: reason });
}

function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw abortError(signal);
}
