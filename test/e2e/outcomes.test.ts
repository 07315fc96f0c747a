import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { SLOW_NOTICE, TRIMMED_NOTE } from "../../src/conversation/session.ts";
import { countTokens } from "../../src/core/tokens.ts";
import { SqliteStore } from "../../src/store/sqlite.ts";
import type { FakeDiscord } from "../fakes/discord.ts";
import { eventually, handled, startWorld, type World } from "./harness.ts";

let world: World | undefined;
afterEach(async () => {
  await world?.stop();
  world = undefined;
});

const mention = (discord: FakeDiscord, text: string) => ({ content: `<@${discord.botUser.id}> ${text}`, mentions: [discord.botUser as never] });
const replyTo = (discord: FakeDiscord, channel: string, messageId: string) => discord.botMessages(channel).filter((m) => m.body.message_reference?.message_id === messageId);

describe("every turn ends in an outcome, seen from Discord", () => {
  it("a gateway replay of 11 answered messages does not count against their sender: the 12th is answered, nobody is told to slow down", async () => {
    world = await startWorld({ env: { FRIEND_USER_MESSAGES_PER_MINUTE: "12" } });
    const { discord, openai, config } = world;
    const channel = discord.channelIds[0]!;
    const alice = discord.user({ name: "alice", globalName: "Alice" });
    openai.otherwise((r) => ({ text: `re ${r.body.messages.at(-1)!.content}` }));
    const sent = [];
    for (let n = 0; n < 11; n++) {
      const m = discord.sendMessage({ channelId: channel, author: alice, ...mention(discord, `m${n}`) });
      sent.push(m);
      await eventually(() => replyTo(discord, channel, m.id)[0]?.content === `re m${n}`, `the answer to m${n}`);
    }
    for (const m of sent) discord.redeliver(m.id);
    await handled(world, sent.at(-1)!.id);
    const twelfth = discord.sendMessage({ channelId: channel, author: alice, ...mention(discord, "m11") });
    await eventually(() => replyTo(discord, channel, twelfth.id)[0]?.content === "re m11", "the twelfth answer");
    expect(discord.botMessages(channel).filter((m) => m.content === config.settings.persona.slowDownReply)).toEqual([]);
    expect(openai.requests).toHaveLength(12);
  });

  it("another process holding the database's lock: replies go on, /healthz answers at once with 503, and everything is saved once the lock goes", async () => {
    const path = join(mkdtempSync(join(tmpdir(), "friend-lock-")), "friend.db");
    world = await startWorld({ env: { FRIEND_HTTP_PORT: "0" }, parts: { store: new SqliteStore({ path }) } });
    const { discord, openai, friend } = world;
    const channel = discord.channelIds[0]!;
    const alice = discord.user({ name: "alice", globalName: "Alice" });
    openai.otherwise((r) => ({ text: `re ${r.body.messages.at(-1)!.content}` }));
    const timedHealth = async () => {
      const started = performance.now();
      const status = (await fetch(`${friend.opsUrl}/healthz`)).status;
      return { status, ms: performance.now() - started };
    };

    // Another process (a backup tool, `sqlite3` on the file) takes the write lock for a few seconds.
    const locker = spawn(
      process.execPath,
      ["-e", `const D = require("better-sqlite3"); const d = new D(${JSON.stringify(path)}); d.exec("BEGIN EXCLUSIVE"); console.log("locked"); process.stdin.once("data", () => { d.exec("ROLLBACK"); d.close(); process.exit(0); });`],
      { stdio: ["pipe", "pipe", "inherit"] },
    );
    await new Promise<void>((resolve) => locker.stdout.once("data", () => resolve()));
    try {
      const m1 = discord.sendMessage({ channelId: channel, author: alice, ...mention(discord, "one") });
      await eventually(() => replyTo(discord, channel, m1.id)[0]?.content === "re one", "an answer while the lock is held");
      const during = await timedHealth();
      expect(during.status).toBe(503);
      // better-sqlite3 waits for a lock on the event loop; Friend's waits are milliseconds, never the lock's seconds.
      expect(during.ms).toBeLessThan(2000);
      const m2 = discord.sendMessage({ channelId: channel, author: alice, ...mention(discord, "two") });
      await eventually(() => replyTo(discord, channel, m2.id)[0]?.content === "re two", "the second answer");
      expect(openai.requests.at(-1)!.body.messages.slice(1).map((m) => m.content)).toEqual(["one", "re one", "two"]);
    } finally {
      locker.stdin.write("release\n");
      await new Promise((resolve) => locker.once("exit", resolve));
    }
    expect((await timedHealth()).status).toBe(200);
    expect(friend.store.loadWindow(channel).map((t) => t.text)).toEqual(["one", "re one", "two", "re two"]);
    expect(friend.store.unanswered()).toEqual([]);
  });

  it("four hung OpenAI calls free their slots at the first-text deadline; a fifth channel is told once that Friend is slow, then answered", async () => {
    world = await startWorld({
      settings: (c) => {
        c.settings.generation.firstTextTimeoutMs = 4000;
        c.settings.limits.slowNoticeMs = 300;
        c.settings.generation.maxRetries = 0;
      },
    });
    const { discord, openai, config } = world;
    discord.addChannel();
    discord.addChannel();
    discord.addChannel();
    const channels = discord.channelIds.slice(0, 5);
    expect(channels).toHaveLength(5);
    const alice = discord.user({ name: "alice", globalName: "Alice" });
    openai.script({ hang: true }, { hang: true }, { hang: true }, { hang: true });
    openai.otherwise(() => ({ text: "Finally, my turn." }));
    const hung = channels.slice(0, 4).map((c) => discord.sendMessage({ channelId: c, author: alice, ...mention(discord, "hello?") }));
    await eventually(() => openai.requests.length === 4, "four calls in flight");
    const fifth = discord.sendMessage({ channelId: channels[4]!, author: alice, ...mention(discord, "anyone?") });
    await eventually(() => replyTo(discord, channels[4]!, fifth.id)[0]?.content === "Finally, my turn.", "the fifth channel's answer", 20_000);
    const fifthReply = replyTo(discord, channels[4]!, fifth.id)[0]!;
    expect(fifthReply.body.content).toBe(SLOW_NOTICE); // posted once as a notice, then edited into the reply
    expect(replyTo(discord, channels[4]!, fifth.id)).toHaveLength(1);
    for (const [i, m] of hung.entries()) {
      await eventually(() => replyTo(discord, channels[i]!, m.id)[0]?.content === config.settings.persona.errorReply, `the error line in channel ${i}`);
    }
  }, 60_000);

  it("a message over the prompt budget is answered after trimming, with a short note, never called a breakdown", async () => {
    world = await startWorld();
    const { discord, openai, config } = world;
    const channel = discord.channelIds[0]!;
    const alice = discord.user({ name: "alice", globalName: "Alice" });
    openai.otherwise(() => ({ text: "That is a LOT of characters." }));
    for (const text of ["中".repeat(1990), "QUJD".repeat(1000)]) {
      const m = discord.sendMessage({ channelId: channel, author: alice, ...mention(discord, text) });
      await eventually(() => replyTo(discord, channel, m.id)[0], "an answer");
      const reply = await eventually(() => replyTo(discord, channel, m.id).find((r) => r.content.endsWith(TRIMMED_NOTE)), "the trimmed answer");
      expect(reply.content).toBe(`That is a LOT of characters.\n${TRIMMED_NOTE}`);
      const sent = openai.requests.at(-1)!.body.messages.at(-1)!.content as string;
      expect(countTokens(sent.slice(0, -1))).toBeLessThanOrEqual(config.settings.window.maxInputTokens);
      expect(text.startsWith(sent.slice(0, -1))).toBe(true);
    }
    expect(world.logs.lines.filter((l) => l.msg === "backend failed; answering with the error line")).toEqual([]);
  });
});
