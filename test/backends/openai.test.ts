import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { OpenAIBackend } from "../../src/backends/openai.ts";
import { loadSettings } from "../../src/config/settings.ts";
import { BackendError, type GenerateRequest } from "../../src/core/backend.ts";
import { FakeOpenAI } from "../fakes/openai-chat.ts";

let fake: FakeOpenAI | undefined;
afterEach(async () => {
  await fake?.stop();
  fake = undefined;
});

const persona = loadSettings().persona;

async function backend(options: { stream?: boolean; promptBudget?: number } = {}) {
  fake = await FakeOpenAI.start();
  return new OpenAIBackend({
    apiKey: "sk-test",
    baseURL: fake.baseURL,
    model: "ft:test",
    timeoutMs: 10_000,
    maxRetries: 0,
    stream: options.stream ?? true,
    promptBudget: options.promptBudget ?? 1500,
    trimToFraction: 0.5,
    logger: pino({ enabled: false }),
  });
}

function request(signal: AbortSignal, extra: Partial<GenerateRequest> = {}): GenerateRequest {
  return {
    channelId: "c",
    persona,
    cast: loadSettings().cast,
    turns: [{ author: "Alice", text: "sing for me", fromFriend: false, at: 1, tokens: 4 }],
    stop: ["\nAlice:"],
    maxTokens: 200,
    temperature: 0.8,
    topP: 0.95,
    signal,
    ...extra,
  };
}

async function drain(stream: AsyncGenerator<string, unknown>): Promise<{ text: string; error?: unknown }> {
  let text = "";
  try {
    for await (const chunk of stream) text += chunk;
    return { text };
  } catch (error) {
    return { text, error };
  }
}

describe("OpenAIBackend against a loopback server with the real SDK", () => {
  it("a stream stopped by its deadline is an error of kind timeout, never a finished reply", async () => {
    const b = await backend();
    fake!.script({ text: "la ".repeat(5000), chunkDelayMs: 5 });
    const deadline = new AbortController();
    const stream = b.generate(request(deadline.signal, { maxTokens: 100_000 }));
    const first = await stream.next();
    expect(first.value).toBe("la ");
    deadline.abort(new BackendError("timeout", "no complete answer within 50 ms"));
    const { error } = await drain(stream);
    expect(error).toBeInstanceOf(BackendError);
    expect((error as BackendError).kind).toBe("timeout");
  });

  it("an abort without a reason is an error of kind aborted", async () => {
    const b = await backend();
    fake!.script({ hang: true });
    const stop = new AbortController();
    const result = drain(b.generate(request(stop.signal)));
    await new Promise<void>((resolve) => {
      const poll = () => (fake!.requests.length > 0 ? resolve() : setImmediate(poll));
      poll();
    });
    stop.abort();
    const { error } = await result;
    expect((error as BackendError).kind).toBe("aborted");
  });

  it.each([true, false])("holds a server that ignores max_tokens to it (stream %s)", async (stream) => {
    const b = await backend({ stream });
    fake!.script({ text: "word ".repeat(1000) });
    const { text, error } = await drain(b.generate(request(new AbortController().signal, { maxTokens: 20 })));
    expect(error).toBeUndefined();
    expect(fake!.requests[0]!.body.max_tokens).toBe(20);
    expect(text.split(" ").filter(Boolean).length).toBeLessThanOrEqual(stream ? 20 : 80);
    expect(text.length).toBeLessThanOrEqual(20 * 16);
  });

  it("fits the prompt to its token budget from the stored counts, dropping old turns in one chunk", async () => {
    const b = await backend({ promptBudget: 100 });
    const turns = Array.from({ length: 12 }, (_, i) => ({ author: "Alice", text: `turn ${i}`, fromFriend: false, at: i, tokens: 6 }));
    await drain(b.generate(request(new AbortController().signal, { turns })));
    // 12 turns × (6 + 4) = 120 > 100: down to ≤ 50 in one go, the newest 5 turns.
    expect(fake!.requests[0]!.body.messages.slice(1).map((m) => m.content)).toEqual(["turn 7", "turn 8", "turn 9", "turn 10", "turn 11"]);
    // The next turn keeps the same start while it fits, so the provider's prompt cache stays valid.
    await drain(b.generate(request(new AbortController().signal, { turns: [...turns, { author: "Alice", text: "turn 12", fromFriend: false, at: 12, tokens: 6 }] })));
    expect(fake!.requests[1]!.body.messages[1]!.content).toBe("turn 7");
  });
});
