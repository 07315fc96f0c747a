import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FakeDiscord } from "../fakes/discord.ts";
import { FakeOpenAI } from "../fakes/openai-chat.ts";
import { writeTinyModelSet } from "../gguf/tiny-models.ts";
import { eventually, interactionReply, useCleanup } from "./harness.ts";
import { spawnFriend, type FriendProcess } from "./process.ts";

const MANAGE_CHANNELS = (1n << 4n).toString();
const cleanup = useCleanup();

function track(friend: FriendProcess): FriendProcess {
  cleanup.push(async () => {
    if (friend.child.exitCode === null && friend.child.signalCode === null) friend.child.kill("SIGKILL");
    await friend.exited;
  });
  return friend;
}

async function setup() {
  const discord = await FakeDiscord.start();
  const openai = await FakeOpenAI.start();
  cleanup.push(() => discord.stop(), () => openai.stop());
  const tiny = writeTinyModelSet();
  cleanup.push(async () => rmSync(tiny.dir, { recursive: true, force: true }));
  const dbPath = join(mkdtempSync(join(tmpdir(), "friend-restart-")), "state", "friend.db");
  const env = {
    DISCORD_TOKEN: discord.token,
    DISCORD_API_URL: discord.apiUrl,
    OPENAI_API_KEY: "sk-restart-test",
    OPENAI_BASE_URL: openai.baseURL,
    OPENAI_MODEL: "ft:test",
    FRIEND_DB_PATH: dbPath,
    LLAMA_MODEL_PATH: tiny.model,
    LLAMA_LORA_PATH: "",
    LLAMA_THREADS: "1",
    LLAMA_CONTEXT_SIZE: "512",
  };
  const start = async () => {
    const before = discord.identifies;
    const friend = track(spawnFriend(env));
    await eventually(() => discord.identifies > before && friend.output().includes("slash commands registered"), "Friend to connect", 50_000);
    return friend;
  };
  const alice = discord.user({ name: "alice", globalName: "Alice" });
  /** A message that mentions Friend. */
  const mention = (t: string) => ({ content: `<@${discord.botUser.id}> ${t}`, mentions: [discord.botUser as never] });
  return { discord, openai, env, start, dbPath, alice, mention };
}

describe("restarts keep Friend the same friend", () => {
  const replyTo = (discord: FakeDiscord, channel: string, messageId: string) =>
    discord.botMessages(channel).filter((m) => m.body.message_reference?.message_id === messageId);

  it("after SIGTERM mid-reply: the reply is posted before Friend exits 0, and everything survives", async () => {
    const { discord, openai, start, alice, mention } = await setup();
    const [localChannel, chat] = discord.channelIds as [string, string];
    openai.otherwise((r) => ({ text: `re ${r.body.messages.at(-1)!.content}` }));

    const first = await start();
    const switched = discord.sendInteraction({ channelId: localChannel, user: alice, name: "model", options: [{ name: "backend", type: 3, value: "local" }], permissions: MANAGE_CHANNELS });
    await discord.waitForRest((c) => c.method === "PATCH" && c.path.includes(`/${switched.token}/messages/@original`) && /Switched/.test(c.body.content), 20_000);
    const m1 = discord.sendMessage({ channelId: chat, author: alice, ...mention("first") });
    await eventually(() => replyTo(discord, chat, m1.id)[0]?.content === "re first", "the first answer");
    // The second reply streams slowly; the signal lands in the middle of it.
    openai.script({ text: "Well, a long and slow answer to the second message.", chunkDelayMs: 150 });
    const m2 = discord.sendMessage({ channelId: chat, author: alice, ...mention("second") });
    await discord.waitForRest((c) => c.method === "POST" && c.body?.message_reference?.message_id === m2.id, 20_000);
    const shownAtSignal = replyTo(discord, chat, m2.id)[0]!.content;
    first.child.kill("SIGTERM");
    expect(await first.exited).toBe(0);
    // The signal landed mid-reply: only part of it was on Discord then.
    expect(shownAtSignal).not.toBe("Well, a long and slow answer to the second message.");
    // What the user sees: the whole reply, posted before the exit.
    expect(replyTo(discord, chat, m2.id).map((m) => m.content)).toEqual(["Well, a long and slow answer to the second message."]);

    await start();
    // The gateway replays the first message: it was answered before, so it is not answered again.
    discord.sendMessage({ channelId: chat, author: alice, ...mention("first"), id: m1.id });
    const m3 = discord.sendMessage({ channelId: chat, author: alice, ...mention("third") });
    await eventually(() => replyTo(discord, chat, m3.id)[0]?.content === "re third", "the answer after the restart", 20_000);
    const prompt = openai.requests.at(-1)!.body.messages.slice(1).map((m) => `${m.role}:${m.content}`);
    expect(prompt).toEqual(["user:first", "assistant:re first", "user:second", "assistant:Well, a long and slow answer to the second message.", "user:third"]);
    expect(openai.requests.filter((r) => r.body.messages.at(-1)!.content === "first")).toHaveLength(1);
    expect(replyTo(discord, chat, m1.id)).toHaveLength(1);

    // The channel switched to the local model before the restart still uses it.
    const requestsBefore = openai.requests.length;
    discord.sendMessage({ channelId: localChannel, author: alice, ...mention("hi local") });
    await eventually(() => discord.botMessages(localChannel)[0]?.content === "Oh, I don't know.", "the local answer", 20_000);
    expect(openai.requests).toHaveLength(requestsBefore);
  }, 180_000); // two process starts, each compiling the TypeScript sources, on a busy 2-core machine

  const statesOnDisk = (dbPath: string) => {
    // Saved next to the database, under the key of the model, context and binary.
    const stateDir = join(dbPath, "..", "llama-state");
    return readdirSync(stateDir).flatMap((key) => readdirSync(join(stateDir, key))).filter((f) => f.endsWith(".state"));
  };

  it.each([
    ["after SIGTERM, a local channel's KV state is saved", "SIGTERM", {}],
    ["with LLAMA_STATE_SAVE_TURNS=1, a local channel's KV state is saved after its turn and survives a SIGKILL", "SIGKILL", { LLAMA_STATE_SAVE_TURNS: "1" }],
  ] as const)("%s, and its first reply after the restart loads it instead of evaluating the window", async (_name, stop, extraEnv) => {
    const { discord, env, start, dbPath, alice, mention } = await setup();
    const localChannel = discord.channelIds[0]!;
    Object.assign(env, { LOG_LEVEL: "debug", ...extraEnv });

    const first = await start();
    const switched = discord.sendInteraction({ channelId: localChannel, user: alice, name: "model", options: [{ name: "backend", type: 3, value: "local" }], permissions: MANAGE_CHANNELS });
    await discord.waitForRest((c) => c.method === "PATCH" && c.path.includes(`/${switched.token}/messages/@original`) && /Switched/.test(c.body.content), 20_000);
    discord.sendMessage({ channelId: localChannel, author: alice, ...mention("hi local") });
    await eventually(() => discord.botMessages(localChannel)[0]?.content === "Oh, I don't know.", "the local answer", 20_000);
    if (stop === "SIGTERM") {
      expect(statesOnDisk(dbPath)).toHaveLength(0); // nothing is saved before the stop without LLAMA_STATE_SAVE_TURNS
      first.child.kill("SIGTERM");
      expect(await first.exited).toBe(0);
    } else {
      await eventually(() => first.output().includes('"msg":"channel state saved"'), "the periodic save", 20_000);
      first.child.kill("SIGKILL");
      await first.exited;
    }
    expect(statesOnDisk(dbPath)).toHaveLength(1);

    const second = await start();
    discord.sendMessage({ channelId: localChannel, author: alice, ...mention("and now?") });
    await eventually(() => discord.botMessages(localChannel).length === 2, "the answer after the restart", 20_000);
    // The channel's state came from disk: everything it held is a prefix of the new prompt.
    const restored = second
      .output()
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .find((l) => l.msg === "channel state restored");
    expect(restored?.channelId).toBe(localChannel);
    expect(restored?.shared).toBe(restored?.tokens);
    expect(Number(restored?.tokens)).toBeGreaterThan(0);
  }, 180_000);

  it("after SIGKILL mid-reply: the next start answers the message exactly once, completing the reply begun", async () => {
    const { discord, openai, start, alice, mention } = await setup();
    const chat = discord.channelIds[1]!;
    openai.otherwise((r) => ({ text: `re ${r.body.messages.at(-1)!.content}` }));

    const first = await start();
    const m1 = discord.sendMessage({ channelId: chat, author: alice, ...mention("first") });
    await eventually(() => replyTo(discord, chat, m1.id)[0]?.content === "re first", "the first answer");
    openai.script({ text: "Well, a long and slow answer that will never finish.", chunkDelayMs: 300 });
    const m2 = discord.sendMessage({ channelId: chat, author: alice, ...mention("second") });
    // Killed once the reply has begun to show: a half-sentence is on Discord.
    await discord.waitForRest((c) => c.method === "POST" && c.body?.message_reference?.message_id === m2.id, 20_000);
    first.child.kill("SIGKILL");
    expect(await first.exited).toBe("SIGKILL");
    expect(replyTo(discord, chat, m2.id)[0]?.content).not.toBe("Well, a long and slow answer that will never finish.");

    await start();
    // Catch-up: the same message, answered once, in the reply that was begun (edited, not doubled).
    await eventually(() => replyTo(discord, chat, m2.id)[0]?.content === "re second", "the caught-up answer", 20_000);
    expect(replyTo(discord, chat, m2.id)).toHaveLength(1);
    const m3 = discord.sendMessage({ channelId: chat, author: alice, ...mention("third") });
    await eventually(() => replyTo(discord, chat, m3.id)[0]?.content === "re third", "the answer after catch-up", 20_000);
    const prompt = openai.requests.at(-1)!.body.messages.slice(1).map((m) => `${m.role}:${m.content}`);
    expect(prompt).toEqual(["user:first", "assistant:re first", "user:second", "assistant:re second", "user:third"]);
    expect(replyTo(discord, chat, m2.id)).toHaveLength(1);
    expect(replyTo(discord, chat, m1.id)).toHaveLength(1);
  }, 180_000);

  it("after SIGKILL mid-reply as a character: catch-up edits the webhook message begun, never posting it twice", async () => {
    const { discord, openai, start, alice } = await setup();
    const chat = discord.channelIds[1]!;
    const first = await start();
    const choose = discord.sendInteraction({ channelId: chat, user: alice, name: "persona", options: [{ name: "character", type: 3, value: "Joey" }], permissions: MANAGE_CHANNELS });
    await discord.waitForRest((c) => c.method === "PATCH" && c.path.includes(`/${choose.token}/messages/@original`), 20_000);
    openai.script({ text: "Well, a long and slow answer that will never finish.", chunkDelayMs: 300 });
    openai.otherwise(() => ({ text: "How you doin'?" }));
    discord.sendMessage({ channelId: chat, author: alice, content: `<@${discord.botUser.id}> hey`, mentions: [discord.botUser as never] });
    // Killed while the reply shows through the webhook, being edited: a half-sentence is on Discord.
    await discord.waitForRest((c) => c.method === "PATCH" && /^\/webhooks\/\d+\/[^/]+\/messages\/\d+$/.test(c.path) && c.status === 200, 20_000);
    first.child.kill("SIGKILL");
    expect(await first.exited).toBe("SIGKILL");
    expect(discord.webhookMessages(chat)).toHaveLength(1);
    expect(discord.webhookMessages(chat)[0]!.content).not.toBe("Well, a long and slow answer that will never finish.");

    await start();
    await eventually(() => discord.webhookMessages(chat)[0]?.content === "How you doin'?", "the caught-up answer, in the message begun", 20_000);
    expect(discord.webhookMessages(chat)).toHaveLength(1);
    expect(discord.webhookMessages(chat)[0]!.username).toBe("Joey");
    expect(discord.botMessages(chat)).toHaveLength(0);
    expect(openai.requests.at(-1)!.body.messages.slice(1)).toEqual([{ role: "user", name: "Alice", content: "hey" }]);
  }, 180_000);

  it("after SIGKILL while a long reply's third part waits on a 429: the restart posts each part exactly once", async () => {
    const { discord, openai, start, alice, mention } = await setup();
    const chat = discord.channelIds[1]!;
    // About 5,000 characters: three parts of at most 2,000.
    const long = Array.from({ length: 120 }, (_, i) => `Sentence number ${i} of a very long story.`).join(" ");
    openai.script({ text: long, chunks: [long] });
    const first = await start();
    let posts = 0;
    discord.rateLimitNext((c) => c.method === "POST" && c.path === `/channels/${chat}/messages` && ++posts === 3, 1, 60);
    const m = discord.sendMessage({ channelId: chat, author: alice, ...mention("tell me everything") });
    await eventually(() => posts >= 3, "the third part to meet a 429 (retry after 60 s)", 20_000);
    expect(replyTo(discord, chat, m.id)).toHaveLength(2);
    first.child.kill("SIGKILL");
    expect(await first.exited).toBe("SIGKILL");

    openai.script({ text: long, chunks: [long] });
    await start();
    await eventually(() => replyTo(discord, chat, m.id).length === 3, "the whole reply after the restart", 30_000);
    const parts = replyTo(discord, chat, m.id).map((p) => p.content);
    expect(parts.join(" ")).toBe(long);
    expect(discord.botMessages(chat)).toHaveLength(3); // no part posted twice
  }, 180_000);

  it("SIGTERM while start-up catch-up is answering: the caught-up reply is posted whole before Friend exits 0", async () => {
    const { discord, openai, start, alice, mention } = await setup();
    const chat = discord.channelIds[1]!;
    const first = await start();
    openai.script({ text: "A reply that never finishes, because the process dies.", chunkDelayMs: 300 });
    const m = discord.sendMessage({ channelId: chat, author: alice, ...mention("hello") });
    await discord.waitForRest((c) => c.method === "POST" && c.body?.message_reference?.message_id === m.id, 20_000);
    first.child.kill("SIGKILL");
    await first.exited;

    const slow = "Caught up at last: this one streams slowly, and a stop arrives in the middle of it, and it still lands whole.";
    openai.script({ text: slow, chunkDelayMs: 100 });
    const second = await start();
    const begun = replyTo(discord, chat, m.id)[0]!;
    await eventually(() => discord.botMessages(chat).find((x) => x.id === begun.id)!.content.startsWith("Caught up"), "catch-up to begin showing", 20_000);
    second.child.kill("SIGTERM");
    expect(await second.exited).toBe(0);
    expect(replyTo(discord, chat, m.id).map((x) => x.content)).toEqual([slow]);
  }, 180_000);

  it("SIGTERM mid-scene: the lines posted stay and are remembered after the restart, the rest are never posted, and Friend exits 0", async () => {
    const { discord, openai, start, alice, mention } = await setup();
    const chat = discord.channelIds[1]!;
    const first = await start();
    const on = discord.sendInteraction({ channelId: chat, user: alice, name: "scene", options: [{ name: "on", type: 1, options: [{ name: "lines", type: 4, value: 3 }] }], permissions: MANAGE_CHANNELS });
    expect((await interactionReply(discord, on.token)).content).toMatch(/up to 3 lines/);
    openai.script({ text: "Sure.\nRoss: one\nMonica: two\nRachel: three" });
    // Ross's line waits 3 s on a 429; the signal lands while it waits.
    discord.rateLimitNext((c) => c.method === "POST" && c.path.startsWith("/webhooks/"), 1, 3);
    discord.sendMessage({ channelId: chat, author: alice, ...mention("go") });
    await discord.waitForRest((c) => c.method === "POST" && c.path.startsWith("/webhooks/") && c.status === 429, 20_000);
    first.child.kill("SIGTERM");
    expect(await first.exited).toBe(0);
    expect(discord.botMessages(chat).map((m) => m.content)).toEqual(["Sure."]);
    // The line in flight may land or not; the lines after it never do.
    const posted = discord.webhookMessages(chat).map((m) => `${m.username}: ${m.content}`);
    expect([[], ["Ross: one"]]).toContainEqual(posted);

    openai.script({ text: "Okay." });
    await start();
    const m2 = discord.sendMessage({ channelId: chat, author: alice, ...mention("and then?") });
    await eventually(() => replyTo(discord, chat, m2.id)[0]?.content === "Okay.", "the answer after the restart", 20_000);
    expect(discord.webhookMessages(chat).map((m) => `${m.username}: ${m.content}`)).toEqual(posted);
    // The next prompt holds exactly what the channel saw: the reply, and the scene lines that were posted.
    const prompt = openai.requests.at(-1)!.body.messages.slice(1).map((m) => `${m.name ?? m.role}: ${m.content}`);
    expect(prompt).toEqual(["Alice: go", "assistant: Sure.", ...posted, "Alice: and then?"]);
  }, 180_000);

  it("refuses a second Friend bot on the same database, naming the one already running", async () => {
    const { env, start } = await setup();
    const first = await start();
    const second = track(spawnFriend(env));
    expect(await second.exited).toBe(1);
    expect(second.output()).toMatch(new RegExp(`FRIEND_DB_PATH=.*friend\\.db is in use by another Friend \\(pid ${first.child.pid} `));
    expect(first.child.exitCode).toBeNull();
  }, 120_000);

  it("refuses a corrupt database file with a clear error", async () => {
    const { env, dbPath, discord } = await setup();
    const { mkdirSync } = await import("node:fs");
    mkdirSync(join(dbPath, ".."), { recursive: true });
    writeFileSync(dbPath, "not sqlite at all ".repeat(100));
    const friend = track(spawnFriend(env));
    expect(await friend.exited).toBe(1);
    expect(friend.output()).toContain(`FRIEND_DB_PATH=${dbPath} is not a readable Friend database`);
    expect(friend.output()).toContain("--move-corrupt-db");
    expect(friend.output()).not.toMatch(/\n\s+at /);
    expect(discord.identifies).toBe(0);
  }, 60_000);
});
