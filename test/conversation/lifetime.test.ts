import fc from "fast-check";
import { afterEach, describe, expect, it, vi } from "vitest";
import { describeForgotten, FORGET_PARTIAL } from "../../src/discord/commands/forget.ts";
import type { IncomingMessage } from "../../src/conversation/conversation.ts";
import { deferred, flakyStore, message, RecordingSink, rig } from "./scripted.ts";

const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Submits `m`, has the next OpenAI generation answer it with `reply`, and waits until its channel is idle. */
async function answer({ conversation, openai }: Pick<ReturnType<typeof rig>, "conversation" | "openai">, m: IncomingMessage, reply: string): Promise<void> {
  const next = openai.generations.length;
  const sink = new RecordingSink();
  conversation.submit(m, sink);
  (await openai.generation(next)).say(reply).end();
  await sink.finished.promise;
  await conversation.idle(m.channelId);
}
const DAY_MS = 86_400_000;

afterEach(() => {
  vi.useRealTimers();
});

describe("deleted messages leave Friend", () => {
  it("a deleted waiting message is never answered, never reaches a prompt, and a replay of it is refused", async () => {
    const { conversation, openai, store } = rig();
    const first = message("c", "first");
    conversation.submit(first, new RecordingSink());
    const g0 = await openai.generation(0);
    const secret = message("c", "my secret");
    const secretSink = new RecordingSink();
    expect(conversation.submit(secret, secretSink)).toBe("queued");
    expect(conversation.withdraw("c", [secret.id])).toBe(1);
    g0.say("Hi.").end();
    await conversation.idle("c");
    expect(secretSink.events).toEqual([]);
    expect(store.unanswered()).toEqual([]);
    expect(conversation.submit(secret, new RecordingSink())).toBe("duplicate");

    conversation.submit(message("c", "next"), new RecordingSink());
    expect((await openai.generation(1)).prompt).toEqual(["Alice: first", "Friend: Hi.", "Alice: next"]);
    expect(openai.generations).toHaveLength(2);
  });

  it("deleted while its reply streams: the generation stops, the begun reply is deleted, nothing is kept", async () => {
    const { conversation, openai, store } = rig();
    const m = message("c", "oops, wrong channel");
    const sink = new RecordingSink();
    conversation.submit(m, sink);
    const g = await openai.generation(0);
    g.say("Well, ");
    await vi.waitFor(() => expect(sink.events).toContain("update:Well,"));
    conversation.withdraw("c", [m.id]);
    await conversation.idle("c");
    expect(g.returned).toBe(true);
    expect(sink.events.at(-1)).toBe("discard");
    expect(sink.posted).toBeUndefined();
    expect(store.loadWindow("c")).toEqual([]);
    expect(store.unanswered()).toEqual([]);
    expect(openai.resets).toContain("c");

    conversation.submit(message("c", "hello"), new RecordingSink());
    expect((await openai.generation(1)).prompt).toEqual(["Alice: hello"]);
  });

  it("a deleted message coalesced with others: the turn stops and the others are answered anew, without it", async () => {
    const { conversation, openai, store } = rig();
    conversation.submit(message("c", "first"), new RecordingSink());
    const g0 = await openai.generation(0);
    const a = message("c", "delete me", "Alice");
    const b = message("c", "keep me", "Bob");
    const [aSink, bSink] = [new RecordingSink(), new RecordingSink()];
    conversation.submit(a, aSink);
    conversation.submit(b, bSink);
    g0.say("One.").end();
    const g1 = await openai.generation(1);
    expect(g1.prompt.slice(-2)).toEqual(["Alice: delete me", "Bob: keep me"]);
    g1.say("About deleting...");
    await vi.waitFor(() => expect(bSink.events).toContain("update:About deleting..."));
    conversation.withdraw("c", [a.id]);
    const g2 = await openai.generation(2);
    expect(g1.returned).toBe(true);
    expect(g2.prompt).toEqual(["Alice: first", "Friend: One.", "Bob: keep me"]);
    g2.say("Kept.").end();
    expect(await bSink.finished.promise).toBe("Kept.");
    expect(bSink.events.indexOf("discard")).toBeLessThan(bSink.events.indexOf("finish:Kept."));
    expect(aSink.events).toEqual([]);
    await conversation.idle("c");
    expect(store.loadWindow("c").map((t) => t.text)).toEqual(["first", "One.", "keep me", "Kept."]);
  });

  it("the message a coalesced reply answers is deleted: the reply goes, and the one left is answered on its own", async () => {
    const { conversation, openai } = rig();
    conversation.submit(message("c", "first"), new RecordingSink());
    const g0 = await openai.generation(0);
    const a = message("c", "keep me", "Alice");
    const b = message("c", "delete me", "Bob");
    const [aSink, bSink] = [new RecordingSink(), new RecordingSink()];
    conversation.submit(a, aSink);
    conversation.submit(b, bSink);
    g0.say("One.").end();
    (await openai.generation(1)).say("Both of you");
    await vi.waitFor(() => expect(bSink.events).toContain("update:Both of you"));
    conversation.withdraw("c", [b.id]);
    const g2 = await openai.generation(2);
    expect(g2.prompt.at(-1)).toBe("Alice: keep me");
    g2.say("Just you.").end();
    expect(await aSink.finished.promise).toBe("Just you.");
    expect(bSink.events.at(-1)).toBe("discard");
    expect(bSink.posted).toBeUndefined();
  });

  it("deleted while its finished reply is being posted: the posted reply is deleted and the turn is not kept", async () => {
    const { conversation, openai, store } = rig();
    const m = message("c", "hello");
    const sink = new RecordingSink();
    const gate = deferred();
    sink.finishGate = gate.promise;
    conversation.submit(m, sink);
    (await openai.generation(0)).say("Hi there.").end();
    await vi.waitFor(() => expect(openai.generations[0]!.returned).toBe(true));
    await settle();
    conversation.withdraw("c", [m.id]);
    gate.resolve();
    await conversation.idle("c");
    expect(sink.events.slice(-2)).toEqual(["finish:Hi there.", "discard"]);
    expect(store.loadWindow("c")).toEqual([]);
    expect(store.unanswered()).toEqual([]);
  });

  it("an answered message that is deleted leaves the window, the store and the local KV cache; Friend's reply stays", async () => {
    const r = rig();
    const { conversation, openai, local, store } = r;
    const m = message("c", "forget this");
    await answer(r, m, "Forgotten what?");
    local.resets.length = 0;
    expect(conversation.withdraw("c", [m.id])).toBe(1);
    expect(local.resets).toEqual(["c"]);
    expect(store.loadWindow("c").map((t) => t.text)).toEqual(["Forgotten what?"]);
    conversation.submit(message("c", "next"), new RecordingSink());
    expect((await openai.generation(1)).prompt).toEqual(["Friend: Forgotten what?", "Alice: next"]);
  });

  it("a delete in a channel Friend never answered in leaves no trace in the store", () => {
    const { conversation, store } = rig();
    expect(conversation.withdraw("elsewhere", ["100000000000000042"])).toBe(0);
    expect(conversation.revise("elsewhere", "100000000000000043", "edited")).toBe(false);
    expect(store.isKnown("100000000000000042")).toBe(false);
    expect(conversation.sessionCount).toBe(0); // channels Friend talks in are not pushed out of memory
  });
});

describe("edits count", () => {
  it("an edit of a waiting message replaces its text: the model sees only the new one", async () => {
    const { conversation, openai, store } = rig();
    conversation.submit(message("c", "first"), new RecordingSink());
    const g0 = await openai.generation(0);
    const m = message("c", "teh typo");
    conversation.submit(m, new RecordingSink());
    expect(conversation.revise("c", m.id, "the typo")).toBe(true);
    expect(store.unanswered().map((u) => u.turn.text)).toEqual(["first", "the typo"]);
    g0.say("Yes?").end();
    expect((await openai.generation(1)).prompt.at(-1)).toBe("Alice: the typo");
  });

  it("an edit while the reply streams stops it and answers the new text, in the same reply", async () => {
    const { conversation, openai, store } = rig();
    const m = message("c", "what is 2+2");
    const sink = new RecordingSink();
    conversation.submit(m, sink);
    const g0 = await openai.generation(0);
    g0.say("It is ");
    await vi.waitFor(() => expect(sink.events).toContain("update:It is"));
    expect(conversation.revise("c", m.id, "what is 3+3")).toBe(true);
    const g1 = await openai.generation(1);
    expect(g0.returned).toBe(true);
    expect(g1.prompt).toEqual(["Alice: what is 3+3"]);
    g1.say("Six.").end();
    expect(await sink.finished.promise).toBe("Six.");
    await conversation.idle("c");
    expect(store.loadWindow("c").map((t) => t.text)).toEqual(["what is 3+3", "Six."]);
  });

  it("an edit of an answered message replaces its text in the window, the store, and resets the KV cache; an unchanged text changes nothing", async () => {
    const r = rig();
    const { conversation, openai, local, store } = r;
    const m = message("c", "I like cats");
    await answer(r, m, "Cats!");
    local.resets.length = 0;
    expect(conversation.revise("c", m.id, "I like cats")).toBe(false); // Discord added an embed
    expect(local.resets).toEqual([]);
    expect(conversation.revise("c", m.id, "I like dogs")).toBe(true);
    expect(local.resets).toEqual(["c"]);
    expect(store.loadWindow("c").map((t) => t.text)).toEqual(["I like dogs", "Cats!"]);
    conversation.submit(message("c", "and you?"), new RecordingSink());
    expect((await openai.generation(1)).prompt).toEqual(["Alice: I like dogs", "Friend: Cats!", "Alice: and you?"]);
  });

  it("an edited message is cut to the input bounds like a new one", async () => {
    const { conversation, openai, settings } = rig({ settings: (s) => void (s.window.maxInputChars = 10) });
    conversation.submit(message("c", "first"), new RecordingSink());
    const g0 = await openai.generation(0);
    const m = message("c", "short");
    const sink = new RecordingSink();
    conversation.submit(m, sink);
    conversation.revise("c", m.id, "a very long edit indeed");
    g0.say("Ok.").end();
    const g1 = await openai.generation(1);
    expect(g1.prompt.at(-1)).toBe("Alice: a very lon…");
    g1.say("Long.").end();
    expect(await sink.finished.promise).toMatch(/^Long\.\n-# /);
    expect(settings.window.maxInputChars).toBe(10);
  });
});

describe("/forget", () => {
  it("forgets a user in every channel and DM, with Friend's replies to them, and leaves other users' turns", async () => {
    const r = rig();
    const { conversation, openai, local, store } = r;
    await answer(r, message("c1", "alice in c1", "Alice"), "Hi Alice.");
    await answer(r, message("c1", "bob in c1", "Bob"), "Hi Bob.");
    await answer(r, message("c2", "alice in c2", "Alice"), "Alice again.");
    await answer(r, message("dm-alice", "alice in a DM", "Alice"), "Psst.");
    local.resets.length = 0;

    const forgotten = conversation.forget("user-Alice");
    expect(forgotten).toEqual({ channels: 3, turns: 3, replies: 3, unanswered: 0, durable: true, partial: false });
    expect(store.loadWindow("c1").map((t) => t.text)).toEqual(["bob in c1", "Hi Bob."]);
    expect(store.loadWindow("c2")).toEqual([]);
    expect(store.loadWindow("dm-alice")).toEqual([]);
    expect(new Set(local.resets)).toEqual(new Set(["c1", "c2", "dm-alice"]));
    expect(conversation.forget("user-Alice")).toEqual({ channels: 0, turns: 0, replies: 0, unanswered: 0, durable: true, partial: false });

    conversation.submit(message("c1", "still there?", "Bob"), new RecordingSink());
    expect((await openai.generation(openai.generations.length)).prompt).toEqual(["Bob: bob in c1", "Friend: Hi Bob.", "Bob: still there?"]);
  });

  it("mid-reply: the user's waiting and in-flight messages go, the reply is withdrawn, and others' messages are answered anew", async () => {
    const { conversation, openai, store } = rig();
    conversation.submit(message("c", "first", "Bob"), new RecordingSink());
    const g0 = await openai.generation(0);
    const aliceSink = new RecordingSink();
    const bobSink = new RecordingSink();
    conversation.submit(message("c", "alice says", "Alice"), aliceSink);
    conversation.submit(message("c", "bob says", "Bob"), bobSink);
    g0.say("One.").end();
    const g1 = await openai.generation(1);
    g1.say("To both");
    await vi.waitFor(() => expect(bobSink.events).toContain("update:To both"));
    const waiting = message("c", "alice waits", "Alice");
    conversation.submit(waiting, new RecordingSink());

    expect(conversation.forget("user-Alice")).toMatchObject({ channels: 1, turns: 0, unanswered: 2 });
    const g2 = await openai.generation(2);
    expect(g2.prompt).toEqual(["Bob: first", "Friend: One.", "Bob: bob says"]);
    g2.say("Just Bob.").end();
    expect(await bobSink.finished.promise).toBe("Just Bob.");
    expect(aliceSink.events).toEqual([]);
    expect(bobSink.events).toContain("discard");
    await conversation.idle("c");
    expect(store.unanswered()).toEqual([]);
    expect(store.channelsOf("user-Alice")).toEqual([]);
    expect(openai.generations).toHaveLength(3);
  });
});

describe("/forget with a failing database", () => {
  it("a store that cannot say where the user's words are: memory is forgotten, and the answer says to try again", async () => {
    const { store, failing } = flakyStore();
    const r = rig({ store });
    const { conversation } = r;
    await answer(r, message("c", "remember me"), "I will.");
    failing.add("channelsOf");
    const forgotten = conversation.forget("user-Alice");
    expect(forgotten).toEqual({ channels: 1, turns: 1, replies: 1, unanswered: 0, durable: true, partial: true });
    expect(describeForgotten(forgotten)).toBe(`Done. I forgot 1 message of yours and 1 of my replies to you, in 1 channel. ${FORGET_PARTIAL}`);
    expect(store.loadWindow("c")).toEqual([]);
  });

  it("a store that cannot be written: what memory held is reported, the answer says so, and the write lands once the store is back", async () => {
    const { store, real, failing } = flakyStore();
    const r = rig({ store });
    const { conversation } = r;
    await answer(r, message("c", "remember me"), "I will.");
    failing.add("forgetAuthor");
    const forgotten = conversation.forget("user-Alice");
    expect(forgotten).toMatchObject({ channels: 1, turns: 1, replies: 1, durable: false, partial: false });
    expect(describeForgotten(forgotten)).toMatch(/can't be written right now/);
    expect(real.loadWindow("c")).toHaveLength(2);
    failing.delete("forgetAuthor");
    expect(conversation.writesDurable()).toBe(true);
    expect(real.loadWindow("c")).toEqual([]);
  });
});

describe("retention", () => {
  it("drops turns older than the retention from memory and the store, at start and then hourly, and keeps the rest", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval", "Date"] });
    vi.setSystemTime(100 * DAY_MS);
    const { conversation, openai, local, store } = rig({ retentionMs: 30 * DAY_MS });
    const said = (text: string, at: number) => ({ author: "Alice", text, fromFriend: false, at, authorId: "user-Alice" });
    store.complete("c", [said("ancient", 60 * DAY_MS)], null);
    store.complete("c", [said("a month ago", 70.5 * DAY_MS)], null);
    store.complete("c", [said("yesterday", 99 * DAY_MS)], null);
    store.complete("d", [said("old elsewhere", 1 * DAY_MS)], null);

    conversation.startRetention();
    expect(store.loadWindow("c").map((t) => t.text)).toEqual(["a month ago", "yesterday"]);
    expect(store.loadWindow("d")).toEqual([]);
    expect(new Set(local.resets)).toEqual(new Set(["c", "d"]));

    // The window is in memory now; a day later the hourly check takes "a month ago" from it too.
    conversation.submit(message("c", "today"), new RecordingSink());
    const g0 = await openai.generation(0);
    expect(g0.prompt).toEqual(["Alice: a month ago", "Alice: yesterday", "Alice: today"]);
    g0.say("Hi.").end();
    await conversation.idle("c");
    vi.setSystemTime(101 * DAY_MS);
    vi.advanceTimersByTime(3600_000);
    expect(store.loadWindow("c").map((t) => t.text)).toEqual(["yesterday", "today", "Hi."]);
    conversation.submit(message("c", "again"), new RecordingSink());
    expect((await openai.generation(1)).prompt).toEqual(["Alice: yesterday", "Alice: today", "Friend: Hi.", "Alice: again"]);
    await conversation.close(0);
  });

  it("without a retention nothing is forgotten for age", () => {
    const { conversation, store } = rig();
    store.complete("c", [{ author: "Alice", text: "1970", fromFriend: false, at: 1 }], null);
    conversation.startRetention();
    expect(conversation.expire()).toBe(0);
    expect(store.loadWindow("c")).toHaveLength(1);
  });
});

describe("leaving a channel or a server", () => {
  it("a channel deleted mid-reply: nothing is posted, deleted or kept, and nothing of it is left in the store", async () => {
    const { conversation, openai, local, store } = rig();
    const before = new RecordingSink();
    conversation.submit({ ...message("c", "earlier"), guildId: "g" }, before);
    (await openai.generation(0)).say("Sure.").end();
    await before.finished.promise;
    await conversation.idle("c");
    conversation.setBackend("c", "local");
    const sink = new RecordingSink();
    conversation.submit({ ...message("c", "hello"), guildId: "g" }, sink);
    const waiting = new RecordingSink();
    conversation.submit({ ...message("c", "waiting"), guildId: "g" }, waiting);
    const g = await local.generation(0);
    g.say("Half a");
    await vi.waitFor(() => expect(sink.events).toContain("update:Half a"));
    conversation.leaveChannel("c");
    await conversation.idle("c");
    expect(g.returned).toBe(true);
    expect(sink.events.filter((e) => !e.startsWith("update:") && e !== "typing")).toEqual([]);
    expect(waiting.events).toEqual([]);
    expect(store.loadWindow("c")).toEqual([]);
    expect(store.unanswered()).toEqual([]);
    expect(store.getBackend("c")).toBeUndefined();
    expect(store.channelsUnder("g")).toEqual([]);
    expect(conversation.backendOf("c")).toBe("openai");
    expect(local.resets).toContain("c");
  });

  it("leaving a server forgets every channel of it, those Discord still listed and those only the store knew (threads), and no other", async () => {
    const r = rig();
    const { conversation, store } = r;
    const answerIn = (channel: string, extra: { guildId?: string; parentId?: string }) => answer(r, { ...message(channel, `in ${channel}`), ...extra }, "Ok.");
    await answerIn("text", { guildId: "g" });
    await answerIn("thread", { guildId: "g", parentId: "text" });
    await answerIn("other", { guildId: "g2" });
    await answerIn("dm", {});
    conversation.setBackend("listed", "local"); // a channel with only a /model choice, known from Discord's list
    conversation.leaveGuild("g", ["text", "listed"]);
    for (const channel of ["text", "thread", "listed"]) {
      expect(store.loadWindow(channel), channel).toEqual([]);
      expect(store.getBackend(channel), channel).toBeUndefined();
    }
    expect(store.loadWindow("other")).toHaveLength(2);
    expect(store.loadWindow("dm")).toHaveLength(2);
  });

  it("deleting a channel forgets the threads recorded under it", async () => {
    const r = rig();
    const { conversation, store } = r;
    await answer(r, { ...message("thread", "in a thread"), guildId: "g", parentId: "parent" }, "Ok.");
    conversation.leaveChannel("parent");
    expect(store.loadWindow("thread")).toEqual([]);
  });
});

describe("any interleaving", () => {
  type Op =
    | { kind: "send"; author: number }
    | { kind: "delete"; pick: number }
    | { kind: "edit"; pick: number }
    | { kind: "forget"; author: number }
    | { kind: "stream" }
    | { kind: "end" };
  const op: fc.Arbitrary<Op> = fc.oneof(
    { arbitrary: fc.record({ kind: fc.constant("send" as const), author: fc.integer({ min: 0, max: 2 }) }), weight: 4 },
    { arbitrary: fc.record({ kind: fc.constant("delete" as const), pick: fc.nat() }), weight: 2 },
    { arbitrary: fc.record({ kind: fc.constant("edit" as const), pick: fc.nat() }), weight: 2 },
    { arbitrary: fc.record({ kind: fc.constant("forget" as const), author: fc.integer({ min: 0, max: 2 }) }), weight: 1 },
    { arbitrary: fc.constant({ kind: "stream" as const }), weight: 2 },
    { arbitrary: fc.constant({ kind: "end" as const }), weight: 3 },
  );

  it("no prompt ever holds a deleted, forgotten or replaced text, and every message left standing is remembered once, in its last version", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 25 }), async (ops) => {
        const { conversation, openai, store } = rig();
        const authors = ["Alice", "Bob", "Carol"];
        /** Texts no prompt may hold from now on. */
        const forbidden = new Set<string>();
        /** Messages standing: id → their current text and author. */
        const standing = new Map<string, { text: string; author: string }>();
        const prompts: { prompt: string[]; forbidden: Set<string> }[] = [];
        let n = 0;
        const check = () => {
          for (const g of openai.generations.slice(prompts.length)) prompts.push({ prompt: g.request.turns.map((t) => t.text), forbidden: new Set(forbidden) });
        };
        const ids = () => [...standing.keys()];
        for (const o of ops) {
          if (o.kind === "send") {
            const m = message("c", `m${n++}`, authors[o.author]);
            conversation.submit(m, new RecordingSink());
            standing.set(m.id, { text: m.text, author: m.authorId });
          } else if (o.kind === "delete" || o.kind === "edit") {
            const id = ids()[o.pick % Math.max(1, ids().length)];
            if (!id) continue;
            const was = standing.get(id)!;
            forbidden.add(was.text);
            if (o.kind === "delete") {
              conversation.withdraw("c", [id]);
              standing.delete(id);
            } else {
              const text = `${was.text}-edited`;
              conversation.revise("c", id, text);
              standing.set(id, { ...was, text });
            }
          } else if (o.kind === "forget") {
            conversation.forget(`user-${authors[o.author]}`);
            for (const [id, m] of standing) if (m.author === `user-${authors[o.author]}`) (forbidden.add(m.text), standing.delete(id));
          } else {
            const g = openai.generations.at(-1);
            if (g && !g.returned) (o.kind === "stream" ? g.say("so ") : g.say("done.").end());
          }
          await settle();
          check();
        }
        // Let everything left be answered.
        for (let rounds = 0; rounds < 50; rounds++) {
          const g = openai.generations.at(-1);
          if (g && !g.returned) g.say("done.").end();
          await settle();
          check();
          if (store.unanswered().length === 0 && openai.generations.every((x) => x.returned)) break;
        }
        await conversation.idle("c");
        for (const { prompt, forbidden: banned } of prompts) expect(prompt.filter((t) => banned.has(t))).toEqual([]);
        const remembered = store.loadWindow("c").filter((t) => !t.fromFriend).map((t) => t.text);
        expect(remembered.filter((t) => forbidden.has(t))).toEqual([]);
        expect(remembered.sort()).toEqual([...standing.values()].map((m) => m.text).sort());
        expect(store.unanswered()).toEqual([]);
      }),
      { numRuns: 60 },
    );
  });
});
