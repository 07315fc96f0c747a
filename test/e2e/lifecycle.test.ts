import { afterEach, describe, expect, it } from "vitest";
import { FakeDiscord } from "../fakes/discord.ts";
import { FakeOpenAI } from "../fakes/openai-chat.ts";
import { eventually } from "./harness.ts";
import { spawnFriend, type FriendProcess } from "./process.ts";

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.reverse()) await step();
  cleanup = [];
});

async function fakes() {
  const discord = await FakeDiscord.start();
  const openai = await FakeOpenAI.start();
  cleanup.push(() => discord.stop(), () => openai.stop());
  const env = {
    DISCORD_TOKEN: discord.token,
    DISCORD_API_URL: discord.apiUrl,
    OPENAI_API_KEY: "sk-process-test-0000",
    OPENAI_BASE_URL: openai.baseURL,
    OPENAI_MODEL: "ft:test",
    FRIEND_DB_PATH: ":memory:",
  };
  return { discord, openai, env };
}

function track(friend: FriendProcess): FriendProcess {
  cleanup.push(async () => {
    if (friend.child.exitCode === null && friend.child.signalCode === null) friend.child.kill("SIGKILL");
    await friend.exited;
  });
  return friend;
}

describe("the Friend process", () => {
  it("refuses bad configuration with one clear message and no stack trace", async () => {
    const friend = track(spawnFriend({ FRIEND_BACKEND: "gpt5", LLAMA_THREADS: "lots", OPENAI_API_KEY: "sk-never-print-me-123" }));
    expect(await friend.exited).toBe(1);
    const out = friend.output();
    expect(out).toContain("Friend cannot start, the configuration is wrong:");
    expect(out).toContain("DISCORD_TOKEN: is required");
    expect(out).toContain("FRIEND_BACKEND: must be one of openai, local");
    expect(out).toContain("LLAMA_THREADS: must be a number");
    expect(out).not.toMatch(/\n\s+at /);
    expect(out).not.toContain("sk-never-print-me-123");
  }, 60_000);

  it.each(["SIGTERM", "SIGINT"] as const)("exits 0 on %s in the middle of a reply, after a clean stop", async (signal) => {
    const { discord, openai, env } = await fakes();
    openai.otherwise(() => ({ text: "a slow answer that never quite finishes", chunkDelayMs: 400 }));
    const friend = track(spawnFriend(env));
    await eventually(() => discord.identifies > 0 && friend.output().includes("connected to Discord"), "Friend to connect", 50_000);
    discord.sendMessage({ channelId: discord.channelIds[0]!, author: discord.user({ name: "ross" }), content: `<@${discord.botUser.id}> hi`, mentions: [discord.botUser as never] });
    await eventually(() => openai.requests.length > 0, "the reply to start");
    friend.child.kill(signal);
    expect(await friend.exited).toBe(0);
    // "bye" is logged only after a clean stop, not when the shutdown deadline forces the exit.
    expect(friend.output()).toContain('"msg":"bye"');
    expect(friend.output()).not.toContain(discord.token);
  }, 60_000); // a process start compiles the TypeScript sources: slow on a busy 2-core machine
});
