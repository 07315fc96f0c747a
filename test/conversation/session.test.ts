import { describe, expect, it, vi } from "vitest";
import { SqliteStore } from "../../src/store/sqlite.ts";
import { deferred, message, RecordingSink, rig, ScriptedBackend } from "./scripted.ts";

/** Lets every already-queued callback and microtask run (no timers involved). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("ChannelSession: one owner per channel", () => {
  it("answers in order and folds messages that arrive mid-reply into the next turn", async () => {
    const { conversation, openai, events } = rig();
    const [s1, s2, s3] = [new RecordingSink(), new RecordingSink(), new RecordingSink()];
    expect(conversation.submit(message("c", "one"), s1)).toBe("started");
    const first = await openai.generation(0);
    expect(conversation.submit(message("c", "two"), s2)).toBe("queued");
    expect(conversation.submit(message("c", "three", "Bob"), s3)).toBe("queued");
    first.say("Friend: ", "Hi there.").end();
    expect(await s1.finished.promise).toBe("Hi there.");

    const second = await openai.generation(1);
    expect(second.prompt).toEqual(["Alice: one", "Friend: Hi there.", "Alice: two", "Bob: three"]);
    second.say("Hey you two.").end();
    expect(await s3.finished.promise).toBe("Hey you two.");
    expect(s2.posted).toBeUndefined(); // one reply for the folded turn, to its newest message
    expect(events).toContainEqual({ type: "coalesced", backend: "openai", count: 2 });
  });

  it("ends the generation once the cleaner cuts an invented scene, and streams only what survives", async () => {
    const { conversation, openai } = rig();
    const sink = new RecordingSink();
    conversation.submit(message("c", "hi"), sink);
    const g = await openai.generation(0);
    g.say("Oh, I don't know.", "\nRoss:", " (entering) Hey Ben!", "\nMonica: Hi!");
    expect(await sink.finished.promise).toBe("Oh, I don't know.");
    expect(g.returned).toBe(true);
    expect(sink.events.filter((e) => e.includes("Ross") || e.includes("Ben"))).toEqual([]);
  });

  it("regenerates an empty reply once, then falls back to the persona's line", async () => {
    const { conversation, openai, settings } = rig();
    const sink = new RecordingSink();
    conversation.submit(message("c", "hi"), sink);
    (await openai.generation(0)).say("Friend: (shrugs)").end();
    (await openai.generation(1)).say("Ross: hey").end(); // someone else's line is no reply of Friend's
    expect(await sink.finished.promise).toBe(settings.persona.fallbackReply);
  });
});

describe("/reset during a reply", () => {
  it("posts the reply in flight but never remembers it, drops waiting messages, and the next prompt holds nothing from before", async () => {
    const { conversation, openai, store } = rig();
    const [s1, s2, s3] = [new RecordingSink(), new RecordingSink(), new RecordingSink()];
    conversation.submit(message("c", "before one"), s1);
    await (await openai.generation(0)).say("Sure.").end();
    await s1.finished.promise;
    const s1b = new RecordingSink();
    conversation.submit(message("c", "before two"), s1b);
    const inFlight = await openai.generation(1);
    conversation.submit(message("c", "waiting"), s2);

    expect(conversation.reset("c")).toEqual({ turns: 2, durable: true });
    expect(openai.resets).toEqual(["c"]);
    inFlight.say("Still answering the old question.").end();
    expect(await s1b.finished.promise).toBe("Still answering the old question."); // its asker still gets it
    await settle();
    expect(store.loadWindow("c")).toEqual([]);
    expect(store.unanswered()).toEqual([]);

    conversation.submit(message("c", "after"), s3);
    const next = await openai.generation(2);
    expect(next.prompt).toEqual(["Alice: after"]);
    expect(s2.events).toEqual([]); // dropped by the reset, never answered
    next.say("Fresh start!").end();
    await s3.finished.promise;
    await settle();
    expect(store.loadWindow("c").map((t) => t.text)).toEqual(["after", "Fresh start!"]);
  });
});

describe("/model during a reply", () => {
  it("finishes the reply in flight on the backend that started it, and applies from the next turn", async () => {
    const { conversation, openai, local } = rig();
    const [s1, s2] = [new RecordingSink(), new RecordingSink()];
    conversation.submit(message("c", "one"), s1);
    const onOpenai = await openai.generation(0);
    conversation.setBackend("c", "local");
    conversation.submit(message("c", "two"), s2);
    expect(conversation.backendOf("c")).toBe("local");
    onOpenai.say("From OpenAI.").end();
    expect(await s1.finished.promise).toBe("From OpenAI.");
    const onLocal = await local.generation(0);
    expect(onLocal.prompt).toEqual(["Alice: one", "Friend: From OpenAI.", "Alice: two"]);
    onLocal.say("From llama.").end();
    expect(await s2.finished.promise).toBe("From llama.");
    expect(openai.generations).toHaveLength(1);
  });
});

describe("admission per backend", () => {
  it("a cold or busy local model never delays an OpenAI channel", async () => {
    const { conversation, openai, local } = rig({ concurrency: { local: 1 } });
    const loading = deferred();
    local.prepareGate = loading.promise;
    conversation.setBackend("l1", "local");
    conversation.setBackend("l2", "local");
    const [l1, l2, o1] = [new RecordingSink(), new RecordingSink(), new RecordingSink()];
    conversation.submit(message("l1", "local one"), l1);
    conversation.submit(message("l2", "local two"), l2);
    conversation.submit(message("o1", "openai one"), o1);
    (await openai.generation(0)).say("Quick!").end();
    expect(await o1.finished.promise).toBe("Quick!");
    // The OpenAI reply was posted while the local model was still loading: no local generation began.
    expect(local.generations).toHaveLength(0);

    loading.resolve();
    const first = await local.generation(0);
    await settle();
    expect(local.generations).toHaveLength(1); // l2 waits for the one local slot
    first.say("Slow one.").end();
    (await local.generation(1)).say("Slow two.").end();
    expect([await l1.finished.promise, await l2.finished.promise]).toEqual(["Slow one.", "Slow two."]);
  });
});

describe("deadlines", () => {
  it("a backend that never answers (and ignores its signal) gets the error line at its deadline", async () => {
    const silent = new ScriptedBackend("openai", { honourSignal: false });
    const { conversation, settings, events, store } = rig({ openai: silent, settings: (s) => void (s.generation.timeoutMs = 50) });
    const sink = new RecordingSink();
    conversation.submit(message("c", "hello?"), sink);
    expect(await sink.finished.promise).toBe(settings.persona.errorReply);
    await settle();
    expect(events).toContainEqual({ type: "backend_error", backend: "openai", kind: "timeout" });
    // The user's turn is part of the story; the error line is not. The message counts as answered.
    expect(store.loadWindow("c").map((t) => t.text)).toEqual(["hello?"]);
    expect(store.unanswered()).toEqual([]);
  });

  it("a stream that ends quietly when its deadline fires is a timeout, and the half-shown reply is replaced", async () => {
    const { conversation, openai, settings, events, store } = rig({ settings: (s) => void (s.generation.timeoutMs = 50) });
    const sink = new RecordingSink();
    conversation.submit(message("c", "hello?"), sink);
    (await openai.generation(0)).say("Well, la la la, ", "la la");
    expect(await sink.finished.promise).toBe(settings.persona.errorReply);
    expect(sink.events.some((e) => e.startsWith("update:Well,"))).toBe(true);
    expect(events).toContainEqual({ type: "backend_error", backend: "openai", kind: "timeout" });
    expect(store.loadWindow("c").filter((t) => t.fromFriend)).toEqual([]);
  });
});

describe("eviction", () => {
  it("never evicts a busy channel; an evicted idle one comes back from the store", async () => {
    const { conversation, openai } = rig({ settings: (s) => void (s.limits.maxActiveChannels = 1) });
    const a = new RecordingSink();
    conversation.submit(message("a", "a one"), a);
    const genA = await openai.generation(0);
    const b = new RecordingSink();
    conversation.submit(message("b", "b one"), b);
    (await openai.generation(1)).say("B reply.").end();
    await b.finished.promise;
    await settle();
    conversation.submit(message("c", "c one"), new RecordingSink()); // evicts idle b, not busy a
    expect(conversation.sessionCount).toBe(2);
    (await openai.generation(2)).say("C reply.").end();

    genA.say("A reply.").end();
    expect(await a.finished.promise).toBe("A reply.");
    await settle();
    conversation.submit(message("a", "a two"), new RecordingSink());
    expect((await openai.generation(3)).prompt).toEqual(["Alice: a one", "Friend: A reply.", "Alice: a two"]);
    conversation.submit(message("b", "b two"), new RecordingSink());
    const genB = await openai.generation(4);
    expect(genB.prompt).toEqual(["Alice: b one", "Friend: B reply.", "Alice: b two"]);
  });
});

describe("graceful stop", () => {
  it("lets a slow reply finish and be posted, and keeps messages that arrive meanwhile for catch-up", async () => {
    const { conversation, openai, store } = rig();
    const [s1, s2] = [new RecordingSink(), new RecordingSink()];
    const m1 = message("c", "one");
    conversation.submit(m1, s1);
    const g = await openai.generation(0);
    const closed = conversation.close(60_000);
    const m2 = message("c", "late");
    expect(conversation.submit(m2, s2)).toBe("deferred");
    g.say("All done.").end();
    await closed;
    expect(s1.posted).toBe("All done.");
    expect(s2.events).toEqual([]);
    expect(store.unanswered().map((m) => m.turn.messageId)).toEqual([m2.id]);
    expect(store.loadWindow("c").map((t) => t.text)).toEqual(["one", "All done."]);
  });

  it("a reply slower than the grace period is replaced by the error line, left unanswered, and not remembered", async () => {
    const { conversation, openai, store, settings } = rig();
    const sink = new RecordingSink();
    const m = message("c", "one");
    conversation.submit(m, sink);
    (await openai.generation(0)).say("Well, I was about to say");
    await settle();
    await conversation.close(10);
    expect(sink.posted).toBe(settings.persona.errorReply); // never a half-sentence left standing
    expect(store.unanswered().map((u) => u.turn.messageId)).toEqual([m.id]);
    expect(store.loadWindow("c")).toEqual([]);
  });

  it("posts nothing for a reply that had shown nothing when the grace period ended", async () => {
    const { conversation, openai, store } = rig();
    const sink = new RecordingSink();
    conversation.submit(message("c", "one"), sink);
    await openai.generation(0);
    await conversation.close(10);
    expect(sink.events.filter((e) => e !== "typing")).toEqual([]);
    expect(store.unanswered()).toHaveLength(1);
  });
});

describe("store failures", () => {
  it("a failed write is a store error, not a backend error, and the channel keeps answering", async () => {
    const real = new SqliteStore({ path: ":memory:" });
    let failing = true;
    const store = new Proxy(real, {
      get(target, key) {
        const value = Reflect.get(target, key, target);
        if ((key === "complete" || key === "accept") && failing) {
          return () => {
            throw new Error("disk I/O error");
          };
        }
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const { conversation, openai, events } = rig({ store });
    const s1 = new RecordingSink();
    conversation.submit(message("c", "one"), s1);
    (await openai.generation(0)).say("Reply one.").end();
    expect(await s1.finished.promise).toBe("Reply one.");
    await settle();
    // One failure streak is one error (the writes wait in order and are retried), never a backend error.
    expect(events.filter((e) => e.type === "store_error")).toHaveLength(1);
    expect(events.filter((e) => e.type === "backend_error")).toEqual([]);
    expect(conversation.unsavedWrites).toBe(2);

    failing = false;
    const s2 = new RecordingSink();
    conversation.submit(message("c", "two"), s2);
    const g = await openai.generation(1);
    expect(g.prompt).toEqual(["Alice: one", "Friend: Reply one.", "Alice: two"]); // memory carried on
    g.say("Reply two.").end();
    expect(await s2.finished.promise).toBe("Reply two.");
    // The next retry (once a second: new writes join the queue untried during an outage) lands
    // the writes that waited first, in order: nothing of the first exchange is lost or answered twice.
    await vi.waitFor(() => expect(conversation.unsavedWrites).toBe(0), { timeout: 3000 });
    expect(real.loadWindow("c").map((t) => t.text)).toEqual(["one", "Reply one.", "two", "Reply two."]);
    expect(real.unanswered()).toEqual([]);
  });

  it("a reply that cannot be posted leaves its message unanswered for catch-up, and the channel goes on", async () => {
    const { conversation, openai, store } = rig();
    const s1 = new RecordingSink();
    s1.failFinish = new Error("other side closed");
    const m1 = message("c", "one");
    conversation.submit(m1, s1);
    (await openai.generation(0)).say("Lost reply.").end();
    await settle();
    await settle();
    expect(s1.events).toContain("finish-failed:Lost reply.");
    expect(store.unanswered().map((u) => u.turn.messageId)).toEqual([m1.id]);
    const s2 = new RecordingSink();
    conversation.submit(message("c", "two"), s2);
    (await openai.generation(1)).say("Here.").end();
    expect(await s2.finished.promise).toBe("Here.");
  });
});

describe("a user's stop (Ctrl-C in the terminal)", () => {
  it("ends the reply where it stands: what was shown is Friend's turn, the unseen rest is not", async () => {
    const { conversation, openai, store } = rig();
    const sink = new RecordingSink();
    conversation.submit(message("c", "tell me a story"), sink);
    const g = await openai.generation(0);
    g.say("Well, once upon a time, ", "there was a");
    await settle();
    expect(conversation.stopReply("c")).toBe(true);
    g.say(" princess.");
    expect(await sink.finished.promise).toBe("Well, once upon a time, there was a");
    expect(g.returned).toBe(true);
    await settle();
    expect(store.loadWindow("c").map((t) => t.text)).toEqual(["tell me a story", "Well, once upon a time, there was a"]);
    expect(openai.generations).toHaveLength(1);
  });

  it("before anything showed: nothing is posted and nothing regenerated; the user's turn stays", async () => {
    const { conversation, openai, store } = rig();
    const sink = new RecordingSink();
    conversation.submit(message("c", "hmm"), sink);
    await openai.generation(0);
    expect(conversation.stopReply("c")).toBe(true);
    await conversation.idle("c");
    expect(sink.events.filter((e) => e !== "typing")).toEqual([]);
    expect(openai.generations).toHaveLength(1);
    expect(store.loadWindow("c").map((t) => t.text)).toEqual(["hmm"]);
    expect(store.unanswered()).toEqual([]);
    expect(conversation.stopReply("c")).toBe(false); // nothing left to stop
  });
});
