import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** One scripted answer of the fake chat-completions endpoint. */
export type ChatScript =
  | {
      text: string;
      /** split the streamed text into these pieces (default: word by word) */
      chunks?: string[];
      delayMs?: number;
      chunkDelayMs?: number;
      /** what the server says ended the text (default "stop") */
      finishReason?: "stop" | "length";
    }
  | { status: number; body?: unknown; headers?: Record<string, string> }
  | { hang: true };

export interface ChatRequest {
  body: {
    model: string;
    messages: { role: string; content: string; name?: string }[];
    stream?: boolean;
    stop?: string[];
    max_tokens?: number;
    [key: string]: unknown;
  };
  headers: IncomingMessage["headers"];
}

/**
 * A loopback OpenAI-compatible `/v1/chat/completions` server for the real `openai` SDK. Answers
 * come from a script queue; with the queue empty it echoes a fixed reply. Every request is kept.
 */
export class FakeOpenAI {
  readonly requests: ChatRequest[] = [];
  /** The most requests that were being answered at the same moment. */
  maxInFlight = 0;
  #inFlight = 0;
  readonly #script: ChatScript[] = [];
  #fallback: (request: ChatRequest) => ChatScript = () => ({ text: "Friend: Sure thing." });
  readonly #open = new Set<ServerResponse>();

  private constructor(
    private readonly server: Server,
    readonly baseURL: string,
  ) {}

  static async start(): Promise<FakeOpenAI> {
    let fake: FakeOpenAI | undefined;
    const server = createServer((req, res) => void fake!.#handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    fake = new FakeOpenAI(server, `http://127.0.0.1:${port}/v1`);
    return fake;
  }

  /** Queues answers, used in order, one per request (retries included). */
  script(...answers: ChatScript[]): this {
    this.#script.push(...answers);
    return this;
  }

  /** What to answer when the queue is empty. */
  otherwise(answer: (request: ChatRequest) => ChatScript): this {
    this.#fallback = answer;
    return this;
  }

  async stop(): Promise<void> {
    for (const res of this.#open) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let raw = "";
    for await (const chunk of req) raw += chunk;
    if (req.method !== "POST" || !req.url?.startsWith("/v1/chat/completions")) {
      res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "not found" } }));
      return;
    }
    const request: ChatRequest = { body: JSON.parse(raw), headers: req.headers };
    this.requests.push(request);
    this.maxInFlight = Math.max(this.maxInFlight, ++this.#inFlight);
    res.on("close", () => this.#inFlight--);
    const answer = this.#script.shift() ?? this.#fallback(request);
    if ("hang" in answer) {
      this.#open.add(res);
      res.on("close", () => this.#open.delete(res));
      return;
    }
    if ("status" in answer) {
      res.writeHead(answer.status, { "content-type": "application/json", ...answer.headers });
      res.end(JSON.stringify(answer.body ?? { error: { message: `scripted ${answer.status}`, type: "server_error" } }));
      return;
    }
    if (answer.delayMs) await sleep(answer.delayMs);
    const id = `chatcmpl-${this.requests.length}`;
    const created = Math.floor(Date.now() / 1000);
    const model = request.body.model;
    if (!request.body.stream) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          id,
          object: "chat.completion",
          created,
          model,
          choices: [{ index: 0, message: { role: "assistant", content: answer.text }, finish_reason: answer.finishReason ?? "stop" }],
          usage: { prompt_tokens: 10, completion_tokens: answer.text.split(/\s+/).length, total_tokens: 10 + answer.text.split(/\s+/).length },
        }),
      );
      return;
    }
    this.#open.add(res);
    res.on("close", () => this.#open.delete(res));
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
    const pieces = answer.chunks ?? answer.text.match(/\S+\s*|\s+/g) ?? [];
    const send = (data: unknown) => res.write(`data: ${JSON.stringify(data)}\n\n`);
    for (const piece of pieces) {
      if (res.destroyed) return;
      send({ id, object: "chat.completion.chunk", created, model, choices: [{ index: 0, delta: { content: piece }, finish_reason: null }] });
      if (answer.chunkDelayMs) await sleep(answer.chunkDelayMs);
    }
    send({ id, object: "chat.completion.chunk", created, model, choices: [{ index: 0, delta: {}, finish_reason: answer.finishReason ?? "stop" }] });
    send({ id, object: "chat.completion.chunk", created, model, choices: [], usage: { prompt_tokens: 10, completion_tokens: pieces.length, total_tokens: 10 + pieces.length } });
    res.end("data: [DONE]\n\n");
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
