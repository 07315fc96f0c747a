import { afterEach, describe, expect, it } from "vitest";
import { FakeDiscord, type RestCall } from "../fakes/discord.ts";
import { eventually, handled, interactionReply, startWorld, type World } from "./harness.ts";

const MANAGE_CHANNELS = (1n << 4n).toString();

let world: World | undefined;
afterEach(async () => {
  await world?.stop();
  world = undefined;
});

const mention = (w: World) => `<@${w.discord.botUser.id}>`;
const executes = (discord: FakeDiscord) => discord.rest.filter((c) => c.method === "POST" && /^\/webhooks\/\d+\/[^/]+$/.test(c.path) && c.status === 200);

/** /persona as a member with Manage Channels: the ephemeral reply's text. */
async function choose(world: World, channelId: string, name: string): Promise<string> {
  const { discord } = world;
  const i = discord.sendInteraction({ channelId, user: discord.user({ name: "mod" }), name: "persona", options: [{ name: "character", type: 3, value: name }], permissions: MANAGE_CHANNELS });
  return (await interactionReply(discord, i.token)).content!;
}

describe("posting as a character through the channel's webhook", () => {
  it("creates one webhook on first use, posts and edits under the character's name and avatar pinging nobody, keeps the token secret, and answers a reply to the character as that character", async () => {
    const discord = await FakeDiscord.start();
    world = await startWorld({ discord });
    const { openai, friend, logs } = world;
    const channel = discord.channelIds[0]!;
    const alice = discord.user({ name: "alice", globalName: "Alice" });
    expect(await choose(world, channel, "Joey")).toBe("From the next message on, **Joey** answers in this channel.");
    const [hook] = discord.channelWebhooks(channel);
    expect(hook).toBeDefined();
    expect(friend.store.getWebhook(channel)).toEqual({ id: hook!.id, token: hook!.token });

    openai.script({ text: "How you doin'? I mean it, @everyone should ask that more.\nRachel: oh please", chunkDelayMs: 60 });
    discord.sendMessage({ channelId: channel, author: alice, content: `${mention(world)} hey`, mentions: [discord.botUser as never] });
    const posted = await eventually(() => discord.webhookMessages(channel).find((m) => m.content === "How you doin'? I mean it, @everyone should ask that more."), "Joey's reply");
    expect(posted.username).toBe("Joey");
    expect(posted.webhookId).toBe(hook!.id);
    expect(posted.body).toMatchObject({ username: "Joey", avatar_url: "https://cdn.discordapp.com/embed/avatars/4.png", allowed_mentions: { parse: [] } });
    const execute = executes(discord)[0]!;
    expect(execute.query.get("wait")).toBe("true");
    expect(execute.query.get("thread_id")).toBeNull();
    // Streaming edits go through the webhook's message edits, under the same rule.
    expect(posted.edits.length).toBeGreaterThan(0);
    for (const edit of posted.edits) expect(edit).toMatchObject({ allowed_mentions: { parse: [] } });
    expect(discord.botMessages(channel)).toHaveLength(0);
    expect(discord.rest.filter((c) => c.method === "POST" && c.path === `/channels/${channel}/webhooks`)).toHaveLength(1);

    // Friend's own post came back through the gateway, recognised by its webhook id.
    expect((await handled(world, posted.id)).reason).toBe("own webhook");

    // The channel moves on to Rachel; a reply to Joey's message is still Joey's to answer.
    await choose(world, channel, "Rachel");
    openai.script({ text: "Because I'm Joey!" });
    discord.sendMessage({ channelId: channel, author: alice, content: "why do you say that?", referencedMessageId: posted.id });
    const second = await eventually(() => discord.webhookMessages(channel).find((m) => m.content === "Because I'm Joey!"), "Joey's second reply");
    expect(second.username).toBe("Joey");
    expect(openai.requests[1]!.body.messages[0]!.content).toContain("Your name is Joey.");
    // The window reads as a script of who said what.
    expect(openai.requests[1]!.body.messages.slice(1)).toEqual([
      { role: "user", name: "Alice", content: "hey" },
      { role: "assistant", content: "How you doin'? I mean it, @everyone should ask that more." },
      { role: "user", name: "Alice", content: "why do you say that?" },
    ]);
    expect(logs.raw).not.toContain(hook!.token);
  });

  it("a persona switch mid-reply: the reply in flight is finished by Friend as Friend, the next one comes from the new character", async () => {
    const discord = await FakeDiscord.start();
    world = await startWorld({ discord });
    const { openai } = world;
    const channel = discord.channelIds[0]!;
    const alice = discord.user({ name: "alice", globalName: "Alice" });
    openai.script({ text: "Well, let me think about that for a while.", chunkDelayMs: 150 }, { text: "How you doin'?" });
    discord.sendMessage({ channelId: channel, author: alice, content: `${mention(world)} one`, mentions: [discord.botUser as never] });
    await eventually(() => discord.botMessages(channel).length === 1, "the reply to begin showing");
    expect(await choose(world, channel, "Joey")).toMatch(/\*\*Joey\*\* answers/);
    discord.sendMessage({ channelId: channel, author: alice, content: `${mention(world)} two`, mentions: [discord.botUser as never] });
    await eventually(() => discord.webhookMessages(channel).find((m) => m.content === "How you doin'?"), "Joey's reply to the second message");
    expect(discord.botMessages(channel).map((m) => m.content)).toEqual(["Well, let me think about that for a while."]);
    expect(openai.requests[0]!.body.messages[0]!.content).toContain("Your name is Friend.");
    expect(openai.requests[1]!.body.messages[0]!.content).toContain("Your name is Joey.");
    expect(openai.requests[1]!.body.messages.slice(1)).toEqual([
      { role: "user", name: "Alice", content: "one" },
      { role: "assistant", name: "Friend", content: "Well, let me think about that for a while." },
      { role: "user", name: "Alice", content: "two" },
    ]);
  });

  it("never answers its own webhook posts in an every-message channel: no echo loop", async () => {
    const discord = await FakeDiscord.start();
    const open = discord.channelIds[1]!;
    world = await startWorld({ discord, env: { FRIEND_CHANNELS: open } });
    world.friend.store.setPersona(open, "Chandler");
    world.openai.otherwise((r) => ({ text: `Could this BE any more ${r.body.messages.at(-1)!.content}?` }));
    const alice = discord.user({ name: "alice" });
    discord.sendMessage({ channelId: open, author: alice, content: "awkward" });
    const posted = await eventually(() => discord.webhookMessages(open).find((m) => m.content === "Could this BE any more awkward?"), "Chandler's reply");
    expect((await handled(world, posted.id)).reason).toBe("own webhook");
    // Another integration's webhook is a bot like any other: ignored, never answered.
    const foreign = discord.postAsWebhook(discord.addForeignWebhook(open), "beep", "Joey");
    expect((await handled(world, foreign.id)).reason).toBe("bot");
    // Give an echo every chance to loop: the answered message and the posts come back; one request only.
    await new Promise((r) => setTimeout(r, 500));
    expect(world.openai.requests).toHaveLength(1);
    expect(discord.webhookMessages(open).filter((m) => m.username === "Chandler")).toHaveLength(1);
  });

  it("a webhook deleted behind Friend's back is created again, once, and the reply still goes out under the character", async () => {
    const discord = await FakeDiscord.start();
    world = await startWorld({ discord });
    const channel = discord.channelIds[0]!;
    world.friend.store.setPersona(channel, "Phoebe");
    world.openai.otherwise((r) => ({ text: `Smelly ${r.body.messages.at(-1)!.content}` }));
    const alice = discord.user({ name: "alice" });
    discord.sendMessage({ channelId: channel, author: alice, content: `${mention(world)} cat`, mentions: [discord.botUser as never] });
    await eventually(() => discord.webhookMessages(channel).some((m) => m.content === "Smelly cat"), "the first reply");
    const first = discord.channelWebhooks(channel)[0]!;
    discord.deleteWebhook(first.id);
    discord.sendMessage({ channelId: channel, author: alice, content: `${mention(world)} dog`, mentions: [discord.botUser as never] });
    await eventually(() => discord.webhookMessages(channel).some((m) => m.content === "Smelly dog"), "the reply after the deletion");
    const [second] = discord.channelWebhooks(channel);
    expect(second!.id).not.toBe(first.id);
    expect(world.friend.store.getWebhook(channel)).toEqual({ id: second!.id, token: second!.token });
    expect(discord.rest.some((c: RestCall) => c.path.startsWith(`/webhooks/${first.id}/`) && c.status === 404)).toBe(true);
    expect(discord.webhookMessages(channel).find((m) => m.content === "Smelly dog")!.webhookId).toBe(second!.id);
    expect(world.logs.raw).not.toContain(first.token);
    expect(world.logs.raw).not.toContain(second!.token);
  });

  it("a long reply is split as today and paced through the webhook's rate limit: every part lands, in order", async () => {
    const discord = await FakeDiscord.start();
    world = await startWorld({ discord, settings: (c) => ((c.settings.generation.maxTokens = 4096), (c.settings.generation.timeoutMs = 20_000)) });
    const channel = discord.channelIds[0]!;
    world.friend.store.setPersona(channel, "Ross");
    const paragraphs = Array.from({ length: 7 }, (_, i) => `Part ${i + 1}. ${"We were on a break. ".repeat(70).trim()}`);
    world.openai.script({ text: paragraphs.join("\n\n"), chunks: paragraphs.map((p, i) => (i ? `\n\n${p}` : p)) });
    discord.sendMessage({ channelId: channel, author: discord.user({ name: "alice" }), content: `${mention(world)} explain`, mentions: [discord.botUser as never] });
    await eventually(() => world!.logs.lines.some((l) => l.msg === "answered"), "the whole reply posted", 20_000);
    const posted = discord.webhookMessages(channel);
    expect(posted.map((m) => m.content)).toEqual(paragraphs);
    expect(posted.every((m) => m.username === "Ross" && m.body.allowed_mentions.parse.length === 0)).toBe(true);
    // Seven posts cannot fit one 2-second window of five: the sixth waited for the bucket.
    const times = executes(discord).map((c) => c.at);
    expect(times.at(-1)! - times[0]!).toBeGreaterThanOrEqual(1500);
  }, 30_000);

  it("posts into a thread through its parent's webhook, with thread_id", async () => {
    const discord = await FakeDiscord.start();
    const parent = discord.channelIds[0]!;
    const thread = discord.addThread(parent, "the one with the thread");
    world = await startWorld({ discord });
    world.friend.store.setPersona(thread, "Ross");
    world.openai.otherwise(() => ({ text: "We were on a break!" }));
    const alice = discord.user({ name: "alice" });
    discord.sendMessage({ channelId: thread, author: alice, content: `${mention(world)} so?`, mentions: [discord.botUser as never] });
    const posted = await eventually(() => discord.webhookMessages(thread).find((m) => m.content === "We were on a break!"), "Ross in the thread");
    expect(posted.username).toBe("Ross");
    expect(discord.channelWebhooks(parent)).toHaveLength(1);
    expect(executes(discord).at(-1)!.query.get("thread_id")).toBe(thread);
    expect((await handled(world, posted.id)).reason).toBe("own webhook");
  });
});

describe("the fallback: Friend posts the character's line itself, the name in bold", () => {
  it("without Manage Webhooks, tells whoever chose the persona why, once, then posts as Friend with the name in bold", async () => {
    const discord = await FakeDiscord.start();
    const channel = discord.channelIds[0]!;
    discord.denyManageWebhooks(channel);
    world = await startWorld({ discord });
    expect(await choose(world, channel, "Monica")).toMatch(/can't post under Monica's own name and avatar here \(I don't have the Manage Webhooks permission/);
    world.openai.otherwise(() => ({ text: "I KNOW!" }));
    const alice = discord.user({ name: "alice" });
    const ask = discord.sendMessage({ channelId: channel, author: alice, content: `${mention(world)} clean?`, mentions: [discord.botUser as never] });
    const posted = await eventually(() => discord.botMessages(channel).find((m) => m.content === "**Monica:** I KNOW!"), "Monica's line, posted by Friend");
    expect(posted.body.message_reference.message_id).toBe(ask.id);
    expect(posted.body.allowed_mentions).toMatchObject({ parse: [] });
    expect(discord.webhookMessages(channel)).toHaveLength(0);
  });

  it("a fallback that begins later (the webhook deleted, Manage Webhooks gone) is shown by /status, with why", async () => {
    const discord = await FakeDiscord.start();
    world = await startWorld({ discord });
    const channel = discord.channelIds[0]!;
    const status = async () => {
      const i = discord.sendInteraction({ channelId: channel, user: discord.user({ name: "member" }), name: "status" });
      const embed = (await interactionReply(discord, i.token)).embeds![0] as { fields: { name: string; value: string }[] };
      return embed.fields.find((f) => f.name === "Persona here")?.value;
    };
    expect(await choose(world, channel, "Chandler")).toBe("From the next message on, **Chandler** answers in this channel.");
    world.openai.otherwise((r) => ({ text: `Could it BE ${r.body.messages.at(-1)!.content}` }));
    const alice = discord.user({ name: "alice" });
    discord.sendMessage({ channelId: channel, author: alice, content: `${mention(world)} sunnier?`, mentions: [discord.botUser as never] });
    await eventually(() => discord.webhookMessages(channel).some((m) => m.content === "Could it BE sunnier?"), "Chandler's line through the webhook");
    expect(await status()).toBe("Chandler");

    discord.denyManageWebhooks(channel);
    discord.deleteWebhook(discord.channelWebhooks(channel)[0]!.id);
    discord.sendMessage({ channelId: channel, author: alice, content: `${mention(world)} colder?`, mentions: [discord.botUser as never] });
    await eventually(() => discord.botMessages(channel).some((m) => m.content === "**Chandler:** Could it BE colder?"), "Chandler's line, posted by Friend");
    expect(await status()).toBe("Chandler, posted by me as **Chandler:** (I don't have the Manage Webhooks permission in this channel)");
  });

  it("at the channel's webhook limit (30007)", async () => {
    const discord = await FakeDiscord.start();
    const channel = discord.channelIds[0]!;
    for (let i = 0; i < 15; i++) discord.addForeignWebhook(channel, `hook ${i}`);
    world = await startWorld({ discord });
    expect(await choose(world, channel, "Joey")).toMatch(/as many webhooks as Discord allows/);
    expect(discord.rest.find((c) => c.method === "POST" && c.path === `/channels/${channel}/webhooks`)!.status).toBe(400);
    world.openai.otherwise(() => ({ text: "Joey doesn't share food!" }));
    discord.sendMessage({ channelId: channel, author: discord.user({ name: "alice" }), content: `${mention(world)} fries?`, mentions: [discord.botUser as never] });
    await eventually(() => discord.botMessages(channel).find((m) => m.content === "**Joey:** Joey doesn't share food!"), "Joey's line, posted by Friend");
  });

  it("in a DM", async () => {
    world = await startWorld();
    const { discord } = world;
    const user = discord.user({ name: "dm-user" });
    const i = discord.sendInteraction({ channelId: "", user, name: "persona", options: [{ name: "character", type: 3, value: "Rachel" }], dm: true });
    expect((await interactionReply(discord, i.token)).content).toMatch(/Discord has no webhooks in direct messages/);
    world.openai.otherwise(() => ({ text: "Noooo." }));
    const dm = discord.sendMessage({ channelId: "", author: user, content: "hi", dm: true });
    await eventually(() => discord.botMessages(dm.channel_id).find((m) => m.content === "**Rachel:** Noooo."), "Rachel's line in the DM");
  });
});

describe("scenes", () => {
  const sceneOn = (lines: number) => [{ name: "on", type: 1, options: [{ name: "lines", type: 4, value: lines }] }];

  it("/scene on posts the kept follow-on lines after the reply, each under its character, and never one that speaks for the user", async () => {
    const discord = await FakeDiscord.start();
    world = await startWorld({ discord });
    const channel = discord.channelIds[0]!;
    const member = discord.user({ name: "member" });
    const refused = discord.sendInteraction({ channelId: channel, user: member, name: "scene", options: sceneOn(2), permissions: "0" });
    expect((await interactionReply(discord, refused.token)).content).toMatch(/Manage Channels/);
    const on = discord.sendInteraction({ channelId: channel, user: member, name: "scene", options: sceneOn(3), permissions: MANAGE_CHANNELS });
    expect((await interactionReply(discord, on.token)).content).toMatch(/up to 3 lines/);
    expect(world.friend.store.getScene(channel)).toBe(3);

    const alice = discord.user({ name: "alice", globalName: "Alice" });
    world.openai.script({ text: "Oh, I don't know, what are you up for?\nRoss: (entering) Hey Ben!\nMonica: Hi!\nAlice: Hi everyone, I'm Alice!\nRachel: Hi Alice!" });
    discord.sendMessage({ channelId: channel, author: alice, content: `${mention(world)} what should we do tonight?`, mentions: [discord.botUser as never] });
    await eventually(() => world!.logs.lines.some((l) => l.msg === "scene played"), "the scene");
    expect(world.openai.requests[0]!.body.stop).toEqual(["\nAlice:"]);
    expect(discord.botMessages(channel).map((m) => m.content)).toEqual(["Oh, I don't know, what are you up for?"]);
    const lines = discord.webhookMessages(channel);
    expect(lines.map((m) => `${m.username}: ${m.content}`)).toEqual(["Ross: *(entering)* Hey Ben!", "Monica: Hi!"]);
    expect(lines[0]!.body).toMatchObject({ avatar_url: "https://cdn.discordapp.com/embed/avatars/0.png", allowed_mentions: { parse: [] } });
  });

  it("a user's message cuts a scene off: the lines posted stay, the rest are never posted, and the message is answered", async () => {
    const discord = await FakeDiscord.start();
    world = await startWorld({ discord });
    const channel = discord.channelIds[0]!;
    world.friend.store.setScene(channel, 3);
    const alice = discord.user({ name: "alice", globalName: "Alice" });
    world.openai.script({ text: "Sure.\nRoss: one\nMonica: two\nRachel: three" }, { text: "Okay, okay." });
    // The first scene line waits a second on a 429 while Alice speaks again.
    discord.rateLimitNext((c) => c.method === "POST" && c.path.startsWith("/webhooks/"), 1, 1);
    discord.sendMessage({ channelId: channel, author: alice, content: `${mention(world)} go`, mentions: [discord.botUser as never] });
    await discord.waitForRest((c) => c.method === "POST" && c.path.startsWith("/webhooks/") && c.status === 429);
    discord.sendMessage({ channelId: channel, author: alice, content: `${mention(world)} stop!`, mentions: [discord.botUser as never] });
    await eventually(() => discord.botMessages(channel).some((m) => m.content === "Okay, okay."), "the answer to the interruption");
    expect(discord.webhookMessages(channel).map((m) => `${m.username}: ${m.content}`)).toEqual(["Ross: one"]);
    expect(world.openai.requests[1]!.body.messages.slice(1).map((m) => `${m.name ?? m.role}: ${m.content}`)).toEqual(["Alice: go", "assistant: Sure.", "Ross: one", "Alice: stop!"]);
  });
});
