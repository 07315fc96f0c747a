import Database from "better-sqlite3";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { SqliteStore } from "../../src/store/sqlite.ts";
import { ScriptedBackend } from "../conversation/scripted.ts";
import type { FakeDiscord } from "../fakes/discord.ts";
import { eventually, interactionReply, startWorld, type World } from "./harness.ts";

const MANAGE_CHANNELS = (1n << 4n).toString();
const MANAGE_MESSAGES = (1n << 13n).toString();
const NOTHING = "0";

let world: World | undefined;
afterEach(async () => {
  await world?.stop();
  world = undefined;
});

const mention = (discord: FakeDiscord, text: string) => ({ content: `<@${discord.botUser.id}> ${text}`, mentions: [discord.botUser as never] });
const replyTo = (discord: FakeDiscord, channel: string, messageId: string) =>
  discord.botMessages(channel).filter((m) => m.body.message_reference?.message_id === messageId);

describe("/reset mid-reply", () => {
  it("posts the reply in flight, and the next request to OpenAI holds nothing from before the reset", async () => {
    world = await startWorld();
    const { discord, openai } = world;
    const channel = discord.channelIds[0]!;
    const alice = discord.user({ name: "alice", globalName: "Alice" });
    openai.otherwise((r) => ({ text: `re ${r.body.messages.at(-1)!.content}` }));
    const m1 = discord.sendMessage({ channelId: channel, author: alice, ...mention(discord, "old news") });
    await eventually(() => replyTo(discord, channel, m1.id)[0]?.content === "re old news", "the first answer");

    openai.script({ text: "Well, this answer is still streaming when the reset lands.", chunkDelayMs: 100 });
    const m2 = discord.sendMessage({ channelId: channel, author: alice, ...mention(discord, "a secret from before") });
    await discord.waitForRest((c) => c.method === "POST" && c.body?.message_reference?.message_id === m2.id);
    const reset = discord.sendInteraction({ channelId: channel, user: alice, name: "reset", permissions: MANAGE_MESSAGES });
    expect((await interactionReply(discord, reset.token)).content).toMatch(/fresh start/i);
    await eventually(() => replyTo(discord, channel, m2.id)[0]?.content === "Well, this answer is still streaming when the reset lands.", "the reply in flight, complete");

    const m3 = discord.sendMessage({ channelId: channel, author: alice, ...mention(discord, "after") });
    await eventually(() => replyTo(discord, channel, m3.id)[0]?.content === "re after", "the answer after the reset");
    expect(openai.requests.at(-1)!.body.messages.slice(1)).toEqual([{ role: "user", name: "Alice", content: "after" }]);
  });
});

describe("admission per backend", () => {
  it("a local channel whose generation is held open does not delay an OpenAI channel", async () => {
    const local = new ScriptedBackend("local");
    world = await startWorld({
      env: { LLAMA_SEQUENCES: "1" },
      // One generation at a time per backend: with one limit for both, the OpenAI channel would wait.
      settings: (c) => void (c.settings.limits.concurrency = 1),
      parts: { makeLocal: () => local },
    });
    const { discord, openai } = world;
    const [localChannel, openaiChannel] = discord.channelIds as [string, string];
    const mod = discord.user({ name: "mod" });
    const switched = discord.sendInteraction({ channelId: localChannel, user: mod, name: "model", options: [{ name: "backend", type: 3, value: "local" }], permissions: MANAGE_CHANNELS });
    expect((await interactionReply(discord, switched.token)).content).toMatch(/Switched this channel to \*\*local\*\*/);

    discord.sendMessage({ channelId: localChannel, author: mod, ...mention(discord, "think hard") });
    const held = await local.generation(0);
    openai.script({ text: "OpenAI is not waiting." });
    const asked = discord.sendMessage({ channelId: openaiChannel, author: mod, ...mention(discord, "quick one") });
    await eventually(() => replyTo(discord, openaiChannel, asked.id)[0]?.content === "OpenAI is not waiting.", "the OpenAI answer");
    // Order of events: the OpenAI reply is on Discord while the local generation is still open.
    expect(held.returned).toBe(false);
    expect(discord.botMessages(localChannel)).toEqual([]);

    held.say("Done thinking.").end();
    await eventually(() => discord.botMessages(localChannel)[0]?.content === "Done thinking.", "the local answer");
  });
});

describe("commands follow the channel rules", () => {
  it("refuses commands in a denied channel and in DMs when DMs are off; /reset needs a permission in a server", async () => {
    const { FakeDiscord } = await import("../fakes/discord.ts");
    const discord = await FakeDiscord.start();
    const [open, denied] = discord.channelIds as [string, string];
    world = await startWorld({ discord, env: { FRIEND_DENY_CHANNELS: denied, FRIEND_ALLOW_DMS: "false" } });
    const member = discord.user({ name: "member" });

    for (const name of ["status", "reset", "model"]) {
      const i = discord.sendInteraction({ channelId: denied, user: member, name, permissions: MANAGE_CHANNELS });
      const reply = await interactionReply(discord, i.token);
      expect(reply.content).toBe("Friend is switched off in this channel.");
      expect(reply.flags).toBe(64);
    }
    const dm = discord.sendInteraction({ channelId: "", user: member, name: "status", dm: true });
    expect((await interactionReply(discord, dm.token)).content).toBe("Friend is switched off in direct messages.");

    const refused = discord.sendInteraction({ channelId: open, user: member, name: "reset", permissions: NOTHING });
    expect((await interactionReply(discord, refused.token)).content).toMatch(/Manage Messages or Manage Channels/);
    const allowed = discord.sendInteraction({ channelId: open, user: member, name: "reset", permissions: MANAGE_CHANNELS });
    expect((await interactionReply(discord, allowed.token)).content).toMatch(/fresh start/i);
  });

  it("lets anyone reset their own DM conversation", async () => {
    world = await startWorld();
    const { discord } = world;
    const user = discord.user({ name: "dm-user" });
    const i = discord.sendInteraction({ channelId: "", user, name: "reset", dm: true });
    expect((await interactionReply(discord, i.token)).content).toMatch(/fresh start/i);
  });
});

describe("delivery", () => {
  it("retries a reply whose socket Discord closed, and posts it exactly once", async () => {
    world = await startWorld();
    const { discord, openai } = world;
    const channel = discord.channelIds[0]!;
    const alice = discord.user({ name: "alice" });
    discord.closeSocketOnNext((c) => c.method === "POST" && c.path === `/channels/${channel}/messages`);
    openai.script({ text: "Still here." });
    const asked = discord.sendMessage({ channelId: channel, author: alice, ...mention(discord, "are you there?") });
    await eventually(() => replyTo(discord, channel, asked.id)[0]?.content === "Still here.", "the reply, after one retry");
    expect(discord.rest.filter((c) => c.method === "POST" && c.path === `/channels/${channel}/messages`).map((c) => c.status)).toEqual([-1, 200]);
    expect(replyTo(discord, channel, asked.id)).toHaveLength(1);
  });

  it("sets a client-wide default that pings nobody, besides each message's own", async () => {
    world = await startWorld();
    expect(world.friend.bot.client.options.allowedMentions).toEqual({ parse: [], repliedUser: false });
  });

  it("keeps answering while the database cannot be written, and /healthz says so until it can", async () => {
    const path = join(mkdtempSync(join(tmpdir(), "friend-locked-")), "friend.db");
    world = await startWorld({ env: { FRIEND_HTTP_PORT: "0" }, parts: { store: new SqliteStore({ path, busyTimeoutMs: 50 }) } });
    const { discord, openai, friend } = world;
    const channel = discord.channelIds[0]!;
    const alice = discord.user({ name: "alice", globalName: "Alice" });
    openai.otherwise((r) => ({ text: `re ${r.body.messages.at(-1)!.content}` }));
    const health = async () => (await fetch(`${friend.opsUrl}/healthz`)).status;
    expect(await health()).toBe(200);

    const other = new Database(path);
    other.exec("BEGIN EXCLUSIVE"); // another process holds the write lock
    try {
      const m1 = discord.sendMessage({ channelId: channel, author: alice, ...mention(discord, "one") });
      await eventually(() => replyTo(discord, channel, m1.id)[0]?.content === "re one", "an answer without the database");
      await eventually(() => world!.logs.lines.some((l) => l.msg === "database write failed; answering from memory and retrying every second"), "the store error in the log");
      expect(await health()).toBe(503);
      const m2 = discord.sendMessage({ channelId: channel, author: alice, ...mention(discord, "two") });
      await eventually(() => replyTo(discord, channel, m2.id)[0]?.content === "re two", "the second answer");
      // Memory carried on without the disk.
      expect(openai.requests.at(-1)!.body.messages.slice(1).map((m) => m.content)).toEqual(["one", "re one", "two"]);
      expect(world.logs.lines.filter((l) => l.msg === "backend failed; answering with the error line")).toEqual([]);
    } finally {
      other.exec("ROLLBACK");
      other.close();
    }
    expect(await health()).toBe(200);
    // What waited was saved once the lock went, in order: a restart remembers both exchanges.
    const saved = new Database(path, { readonly: true });
    expect(saved.prepare("SELECT text FROM turns ORDER BY id").all().map((r) => (r as { text: string }).text)).toEqual(["one", "re one", "two", "re two"]);
    expect(saved.prepare("SELECT count(*) AS n FROM accepted").get()).toEqual({ n: 0 });
    saved.close();
    const metrics = await (await fetch(`${friend.opsUrl}/metrics`)).text();
    expect(metrics).toMatch(/^friend_store_errors_total [1-9]/m);
    expect(metrics).toMatch(/^friend_nodejs_eventloop_lag_seconds /m);
  });
});
