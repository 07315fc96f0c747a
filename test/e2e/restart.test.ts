import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FakeDiscord } from "../fakes/discord.ts";
import { FakeOpenAI } from "../fakes/openai-chat.ts";
import { writeTinyModelSet } from "../gguf/tiny-models.ts";
import { eventually } from "./harness.ts";
import { spawnFriend, type FriendProcess } from "./process.ts";

const MANAGE_CHANNELS = (1n << 4n).toString();
let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.reverse()) await step();
  cleanup = [];
});

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
  return { discord, openai, env, start, dbPath };
}

describe("restarts keep Friend the same friend", () => {
  it.each(["SIGTERM", "SIGKILL"] as const)("after %s mid-reply: backends, windows and answered ids survive", async (signal) => {
    const { discord, openai, start } = await setup();
    const [localChannel, chat] = discord.channelIds as [string, string];
    const alice = discord.user({ name: "alice", globalName: "Alice" });
    const mention = { content: (t: string) => `<@${discord.botUser.id}> ${t}`, mentions: [discord.botUser as never] };
    openai.otherwise((r) => ({ text: `re ${r.body.messages.at(-1)!.content}` }));

    const first = await start();
    const switched = discord.sendInteraction({ channelId: localChannel, user: alice, name: "model", options: [{ name: "backend", type: 3, value: "local" }], permissions: MANAGE_CHANNELS });
    await discord.waitForRest((c) => c.method === "PATCH" && c.path.includes(`/${switched.token}/messages/@original`) && /Switched/.test(c.body.content), 20_000);
    const m1 = discord.sendMessage({ channelId: chat, author: alice, ...mention, content: mention.content("first") });
    await eventually(() => discord.botMessages(chat)[0]?.content === "re first", "the first answer");
    // The second reply streams slowly; the signal lands in the middle of it.
    openai.script({ text: "a long and slow answer to the second message", chunkDelayMs: 150 });
    discord.sendMessage({ channelId: chat, author: alice, ...mention, content: mention.content("second") });
    await eventually(() => openai.requests.length === 2, "the second request");
    first.child.kill(signal);
    expect(await first.exited).toBe(signal === "SIGTERM" ? 0 : "SIGKILL");

    await start();
    // The gateway replays the first message: it was answered before, so it is not answered again.
    discord.sendMessage({ channelId: chat, author: alice, ...mention, content: mention.content("first"), id: m1.id });
    discord.sendMessage({ channelId: chat, author: alice, ...mention, content: mention.content("third") });
    await eventually(() => discord.botMessages(chat).some((m) => m.content === "re third"), "the answer after the restart", 20_000);
    const prompt = openai.requests.at(-1)!.body.messages.slice(1).map((m) => `${m.role}:${m.content}`);
    if (signal === "SIGTERM") {
      // A clean stop lets the reply in flight finish, so it is part of the story.
      expect(prompt).toEqual(["user:first", "assistant:re first", "user:second", "assistant:a long and slow answer to the second message", "user:third"]);
    } else {
      // A kill loses at most the reply in flight, never earlier history.
      expect(prompt).toEqual(["user:first", "assistant:re first", "user:third"]);
    }
    expect(openai.requests.filter((r) => r.body.messages.at(-1)!.content === "first")).toHaveLength(1);

    // The channel switched to the local model before the restart still uses it.
    const requestsBefore = openai.requests.length;
    discord.sendMessage({ channelId: localChannel, author: alice, ...mention, content: mention.content("hi local") });
    await eventually(() => discord.botMessages(localChannel)[0]?.content === "Oh, I don't know.", "the local answer", 20_000);
    expect(openai.requests).toHaveLength(requestsBefore);
  }, 180_000); // two process starts, each compiling the TypeScript sources, on a busy 2-core machine

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
