import { describe, expect, it } from "vitest";
import { fitInput } from "../../src/conversation/conversation.ts";
import { loadFailedLine, SLOW_NOTICE, TOO_LONG_LINE, TRIMMED_NOTE } from "../../src/conversation/session.ts";
import { BackendError } from "../../src/core/backend.ts";
import { countTokens } from "../../src/core/tokens.ts";
import { SqliteStore } from "../../src/store/sqlite.ts";
import { deferred, flakyStore, message, RecordingSink, rig } from "./scripted.ts";

const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("every turn ends in an outcome", () => {
  it("a store read that throws gives the error line, strands nothing queued meanwhile, and the window is read again once the store is back", async () => {
    const { store, real, failing } = flakyStore();
    real.complete("c", [{ author: "Alice", text: "from before", fromFriend: false, at: 1 }], { author: "Friend", text: "I remember.", fromFriend: true, at: 2 });
    failing.add("loadWindow");
    const { conversation, openai, settings } = rig({ store });
    const [s1, s2] = [new RecordingSink(), new RecordingSink()];
    const gate = deferred();
    s1.finishGate = gate.promise;
    conversation.submit(message("c", "one"), s1);
    conversation.submit(message("c", "two"), s2); // arrives while the first turn is still posting
    gate.resolve();
    expect(await s1.finished.promise).toBe(settings.persona.errorReply);
    expect(openai.generations).toHaveLength(0); // no model call on a window that could not be read

    failing.delete("loadWindow");
    const g = await openai.generation(0); // "two" was not stranded in the queue
    expect(g.prompt).toEqual(["Alice: from before", "Friend: I remember.", "Alice: one", "Alice: two"]);
    g.say("Back again.").end();
    expect(await s2.finished.promise).toBe("Back again.");
  });

  it("a store that cannot say which backend a channel uses answers on the default, and asks again next time", async () => {
    const { store, real, failing } = flakyStore();
    real.setBackend("c", "local");
    failing.add("getBackend");
    const { conversation, openai, local } = rig({ store });
    const s1 = new RecordingSink();
    conversation.submit(message("c", "hi"), s1);
    (await openai.generation(0)).say("Default here.").end();
    expect(await s1.finished.promise).toBe("Default here.");
    failing.delete("getBackend");
    conversation.submit(message("c", "again"), new RecordingSink());
    expect((await local.generation(0)).prompt.at(-1)).toBe("Alice: again");
  });

  it("a final post that fails is replaced by the error line (abandon), and the message stays unanswered for catch-up", async () => {
    const { conversation, openai, store, settings } = rig();
    const sink = new RecordingSink();
    sink.failFinish = new Error("Missing Permissions");
    const m = message("c", "hello");
    conversation.submit(m, sink);
    (await openai.generation(0)).say("Half of a long reply").end();
    await conversation.idle("c");
    await settle();
    expect(sink.events).toContain(`abandon:${settings.persona.errorReply}`);
    expect(store.unanswered().map((u) => u.turn.messageId)).toEqual([m.id]);
  });

  it("a post that hangs (a long rate limit) ends at the posting deadline; the channel and close() go on", async () => {
    const { conversation, openai, store, settings } = rig({ settings: (s) => void (s.limits.postTimeoutMs = 50) });
    const hung = new RecordingSink();
    hung.finishGate = new Promise(() => {}); // never posts
    const m = message("c", "one");
    conversation.submit(m, hung);
    (await openai.generation(0)).say("Stuck.").end();
    await conversation.idle("c");
    expect(hung.events).toContain(`abandon:${settings.persona.errorReply}`);
    expect(store.unanswered().map((u) => u.turn.messageId)).toEqual([m.id]);

    const next = new RecordingSink();
    conversation.submit(message("c", "two"), next);
    (await openai.generation(1)).say("Unstuck.").end();
    expect(await next.finished.promise).toBe("Unstuck.");

    const stuckAgain = new RecordingSink();
    stuckAgain.finishGate = new Promise(() => {});
    conversation.submit(message("c", "three"), stuckAgain);
    (await openai.generation(2)).say("Stuck again.").end();
    await conversation.close(10); // settles although the post never does
  });

  it("a posted reply whose 'answered' write failed is recorded once the store is back: catch-up after a restart does not answer it again", async () => {
    const { store, real, failing } = flakyStore();
    const { conversation, openai } = rig({ store });
    failing.add("complete");
    const sink = new RecordingSink();
    conversation.submit(message("c", "hello"), sink);
    (await openai.generation(0)).say("Posted.").end();
    expect(await sink.finished.promise).toBe("Posted.");
    await settle();
    expect(real.unanswered()).toHaveLength(1); // not yet durable
    failing.delete("complete");
    await conversation.close(10); // the last try at shutdown lands it
    expect(real.unanswered()).toEqual([]);

    const restarted = rig({ store: real });
    const resumed = await restarted.conversation.catchUp({ maxAgeMs: 60_000, sinkFor: async () => new RecordingSink() });
    expect(resumed).toEqual({ resumed: 0, stale: 0, gone: 0 });
    expect(restarted.openai.generations).toHaveLength(0);
  });

  it("a slow model load ends the turn at its own limit, saying what is still going on; the next turn gets the model", async () => {
    const { conversation, local } = rig({ settings: (s) => void (s.generation.prepareTimeoutMs = 30) });
    const loading = deferred();
    local.prepareGate = loading.promise;
    local.progress = { step: "downloading", text: "downloading 37% of model.gguf" };
    conversation.setBackend("c", "local");
    const s1 = new RecordingSink();
    conversation.submit(message("c", "hi"), s1);
    expect(await s1.finished.promise).toBe("I'm still getting ready (downloading 37% of model.gguf). Try me again in a minute.");
    expect(local.generations).toHaveLength(0);

    loading.resolve();
    const s2 = new RecordingSink();
    conversation.submit(message("c", "now?"), s2);
    (await local.generation(0)).say("Ready.").end();
    expect(await s2.finished.promise).toBe("Ready.");
  });

  it("hung backends free their slots at the first-text deadline; a channel kept waiting is told once, then answered", async () => {
    const { conversation, openai, settings, events } = rig({
      concurrency: { openai: 2 },
      settings: (s) => {
        s.generation.firstTextTimeoutMs = 3000; // long enough for the third message to arrive while both slots are held, on a busy machine
        s.limits.slowNoticeMs = 20;
      },
    });
    const hung = [new RecordingSink(), new RecordingSink()];
    conversation.submit(message("h1", "hello?"), hung[0]!);
    conversation.submit(message("h2", "hello?"), hung[1]!);
    await openai.generation(1);
    const waiting = new RecordingSink();
    conversation.submit(message("w", "anyone?"), waiting);
    expect(await hung[0]!.finished.promise).toBe(settings.persona.errorReply);
    const g = await openai.generation(2);
    g.say("Here I am.").end();
    expect(await waiting.finished.promise).toBe("Here I am.");
    expect(waiting.events.filter((e) => e.startsWith("notice:"))).toEqual([`notice:${SLOW_NOTICE}`]);
    expect(await hung[1]!.finished.promise).toBe(settings.persona.errorReply);
    expect(events.filter((e) => e.type === "backend_error")).toEqual([
      { type: "backend_error", backend: "openai", kind: "timeout" },
      { type: "backend_error", backend: "openai", kind: "timeout" },
    ]);
  });

  it("a model whose stream stalls after its first text still ends at the whole-reply deadline", async () => {
    const { conversation, openai, settings } = rig({
      settings: (s) => {
        s.generation.firstTextTimeoutMs = 1000;
        s.generation.timeoutMs = 60;
      },
    });
    const sink = new RecordingSink();
    conversation.submit(message("c", "tell me"), sink);
    (await openai.generation(0)).say("Well, ");
    expect(await sink.finished.promise).toBe(settings.persona.errorReply);
  });
});

describe("a message too long for the prompt", () => {
  it("is cut to the input budget and answered, with a short note; the note is not part of the story", async () => {
    const { conversation, openai, store, settings } = rig();
    const sink = new RecordingSink();
    const long = "中".repeat(1990);
    conversation.submit(message("c", long), sink);
    const g = await openai.generation(0);
    const sent = g.request.turns.at(-1)!.text;
    expect(countTokens(sent.slice(0, -1))).toBeLessThanOrEqual(settings.window.maxInputTokens);
    expect(long.startsWith(sent.slice(0, -1))).toBe(true);
    g.say("That's a lot of characters.").end();
    expect(await sink.finished.promise).toBe(`That's a lot of characters.\n${TRIMMED_NOTE}`);
    await settle();
    expect(store.loadWindow("c").at(-1)!.text).toBe("That's a lot of characters.");
  });

  it("a model that cannot load says why, not that Friend broke", async () => {
    const { conversation, openai } = rig();
    const sink = new RecordingSink();
    conversation.submit(message("c", "hi"), sink);
    (await openai.generation(0)).fail(new BackendError("load", "models/x.gguf: not a GGUF file"));
    expect(await sink.finished.promise).toBe(loadFailedLine("models/x.gguf: not a GGUF file"));
    expect(await sink.finished.promise).toContain("not a GGUF file");
  });

  it("a backend that still cannot fit it says so plainly, not as a breakdown", async () => {
    const { conversation, openai } = rig();
    const sink = new RecordingSink();
    conversation.submit(message("c", "short"), sink);
    (await openai.generation(0)).fail(new BackendError("too_long", "does not fit"));
    expect(await sink.finished.promise).toBe(TOO_LONG_LINE);
  });

  it("fitInput never exceeds the token budget, keeps a prefix, and never splits a surrogate pair", async () => {
    const fc = await import("fast-check");
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 400 }), fc.integer({ min: 16, max: 200 }), (text, maxTokens) => {
        const { text: out, trimmed } = fitInput(text, 100_000, maxTokens);
        if (!trimmed) return out === text && countTokens(text) <= maxTokens;
        const body = out.slice(0, -1);
        return text.startsWith(body) && countTokens(body) <= maxTokens && !/[\uD800-\uDBFF]$/.test(body);
      }),
    );
  });
});

describe("catch-up and ordering", () => {
  it("catch-up goes before a newer message still waiting, skips what is already being answered, and the window reads in the order things were said", async () => {
    const { conversation, openai, store } = rig();
    const t = Date.now();
    conversation.submit({ ...message("c", "first"), at: t - 10_000 }, new RecordingSink());
    const running = await openai.generation(0);
    conversation.submit({ ...message("c", "new"), at: t }, new RecordingSink());
    store.accept({ channelId: "c", authorId: "u", turn: { author: "Alice", text: "old one", fromFriend: false, at: t - 3000, messageId: "1001" } });
    store.accept({ channelId: "c", authorId: "u", turn: { author: "Alice", text: "old two", fromFriend: false, at: t - 2000, messageId: "1002" } });
    const counts = await conversation.catchUp({ maxAgeMs: 60_000, sinkFor: async () => new RecordingSink() });
    expect(counts).toEqual({ resumed: 2, stale: 0, gone: 0 }); // "first" and "new" are in memory already
    running.say("One.").end();
    const next = await openai.generation(1);
    expect(next.prompt).toEqual(["Alice: first", "Friend: One.", "Alice: old one", "Alice: old two", "Alice: new"]);
  });

  it("gives up messages older than the catch-up age, and those whose Discord message is gone", async () => {
    const { conversation, openai, store } = rig();
    const t = Date.now();
    store.accept({ channelId: "c", authorId: "u", turn: { author: "Alice", text: "ancient", fromFriend: false, at: t - 3_600_000, messageId: "2001" } });
    store.accept({ channelId: "d", authorId: "u", turn: { author: "Alice", text: "deleted", fromFriend: false, at: t - 1000, messageId: "2002" } });
    expect(await conversation.catchUp({ maxAgeMs: 60_000, sinkFor: async () => null })).toEqual({ resumed: 0, stale: 1, gone: 1 });
    expect(store.unanswered()).toEqual([]);
    expect(openai.generations).toHaveLength(0);
  });
});

describe("gateway replays and flood control", () => {
  it("a replay of answered messages never counts against its sender's rate", async () => {
    const { conversation, openai } = rig({ userMessagesPerMinute: 12 });
    const sent = Array.from({ length: 11 }, (_, n) => message("c", `m${n}`));
    for (const [n, m] of sent.entries()) {
      const sink = new RecordingSink();
      conversation.submit(m, sink);
      (await openai.generation(n)).say(`r${n}`).end();
      await sink.finished.promise;
    }
    await settle();
    for (const m of sent) expect(conversation.submit(m, new RecordingSink())).toBe("duplicate");
    const twelfth = new RecordingSink();
    expect(conversation.submit(message("c", "m11"), twelfth)).toBe("started");
    (await openai.generation(11)).say("r11").end();
    expect(await twelfth.finished.promise).toBe("r11");
  });
});

describe("/reset while the store fails", () => {
  it("says it is not durable yet, keeps trying ahead of later writes, and the old rows never come back", async () => {
    const { store, real, failing } = flakyStore();
    const { conversation, openai } = rig({ store });
    const s1 = new RecordingSink();
    conversation.submit(message("c", "my secret is 42"), s1);
    (await openai.generation(0)).say("Noted.").end();
    await s1.finished.promise;
    await settle();
    failing.add("clearChannel");
    expect(conversation.reset("c")).toEqual({ turns: 2, durable: false });
    const s2 = new RecordingSink();
    conversation.submit(message("c", "what was my secret?"), s2);
    const g = await openai.generation(1);
    expect(g.prompt).toEqual(["Alice: what was my secret?"]);
    g.say("No idea.").end();
    await s2.finished.promise;
    await settle();
    failing.delete("clearChannel");
    await conversation.close(10);
    // The reset landed first, then the exchange after it: a restart sees no secret.
    expect(real.loadWindow("c").map((t) => t.text)).toEqual(["what was my secret?", "No idea."]);
  });
});
