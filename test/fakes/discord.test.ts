/**
 * Proves the fake Discord against a real, unmodified discord.js Client: if these pass,
 * the rest of the suite can trust what it sees through the fake.
 */
import { once } from "node:events";
import {
  ChatInputCommandInteraction, Client, type Collection, type DMChannel, Events, GatewayIntentBits, Message, MessageFlags, Options, Partials, Routes, type TextChannel,
} from "discord.js";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FakeDiscord } from "./discord.ts";

const ManageChannels = (1n << 4n).toString();

let fake: FakeDiscord;
let client: Client | undefined;

beforeEach(async () => {
  fake = await FakeDiscord.start();
});

afterEach(async () => {
  await client?.destroy(); // before the fake stops, or the client tries to reconnect
  client = undefined;
  await fake.stop();
});

async function login(intents = [
  GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages, GatewayIntentBits.MessageContent, GatewayIntentBits.DirectMessages,
]): Promise<Client<true>> {
  const c = new Client({ intents, partials: [Partials.Channel], rest: { api: fake.apiUrl } });
  client = c;
  const ready = once(c, Events.ClientReady);
  await c.login(fake.token);
  await ready;
  return c as Client<true>;
}

/** Resolves with the next message the client sees that was not written by the bot itself. */
function nextHumanMessage(c: Client): Promise<Message> {
  return new Promise((resolve) => {
    const onMessage = (m: Message) => {
      if (m.author.id === fake.botUser.id) return;
      c.off(Events.MessageCreate, onMessage);
      resolve(m);
    };
    c.on(Events.MessageCreate, onMessage);
  });
}

function guildChannel(c: Client, id: string): TextChannel {
  return c.channels.cache.get(id) as TextChannel;
}

describe("FakeDiscord with a real discord.js Client", () => {
  it("logs in quickly and exposes the guild, its channels and the bot user", async () => {
    const started = Date.now();
    const c = await login();
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(c.user.id).toBe(fake.botUser.id);
    expect(c.application.id).toBe(fake.applicationId);
    expect(fake.identifies).toBe(1);
    expect(fake.channelIds.length).toBeGreaterThanOrEqual(4);
    const guild = c.guilds.cache.get(fake.guildId);
    expect(guild?.available).toBe(true);
    for (const id of fake.channelIds) expect(guild?.channels.cache.get(id)?.isTextBased()).toBe(true);
    expect(guild?.members.cache.has(fake.botUser.id)).toBe(true);
    expect(fake.rest.some((call) => call.path === "/gateway/bot")).toBe(true);
  });

  it("delivers an injected guild message with its author, member and mentions", async () => {
    const c = await login();
    const rachel = fake.user({ name: "rachel", globalName: "Rachel Green", nick: "Rach" });
    const arrived = nextHumanMessage(c);
    const sent = fake.sendMessage({ channelId: fake.channelIds[0]!, author: rachel, content: `<@${fake.botUser.id}> hi`, mentions: [fake.botUser] });
    const message = await arrived;
    expect(message.id).toBe(sent.id);
    expect(message.content).toBe(`<@${fake.botUser.id}> hi`);
    expect(message.author.id).toBe(rachel.id);
    expect(message.author.globalName).toBe("Rachel Green");
    expect(message.member?.displayName).toBe("Rach");
    expect(message.guildId).toBe(fake.guildId);
    expect(message.mentions.users.has(fake.botUser.id)).toBe(true);
    expect(message.createdTimestamp).toBeGreaterThan(Date.now() - 60_000);
  });

  it("delivers a DM through Partials.Channel and lets the bot answer in it", async () => {
    const c = await login();
    const ross = fake.user({ name: "ross" });
    const arrived = nextHumanMessage(c);
    fake.sendMessage({ channelId: fake.channelIds[0]!, author: ross, content: "psst", dm: true });
    const message = await arrived;
    expect(message.guildId).toBeNull();
    expect(message.channel.isDMBased()).toBe(true);
    expect(message.channelId).toBe(fake.dmChannelId(ross));
    await (message.channel as DMChannel).send("hello ross");
    expect(fake.botMessages(fake.dmChannelId(ross)).map((m) => m.content)).toEqual(["hello ross"]);
  });

  it("blanks message content without the MessageContent intent, like real Discord", async () => {
    const c = await login([GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages]);
    const arrived = nextHumanMessage(c);
    fake.sendMessage({ channelId: fake.channelIds[0]!, author: fake.user({ name: "joey" }), content: "how you doin" });
    expect((await arrived).content).toBe("");
  });

  it("records send, reply and edit, and botMessages() shows the final content", async () => {
    const c = await login();
    const channelId = fake.channelIds[1]!;
    const monica = fake.user({ name: "monica" });
    const arrived = nextHumanMessage(c);
    fake.sendMessage({ channelId, author: monica, content: "clean this" });
    const incoming = await arrived;

    const posted = await guildChannel(c, channelId).send({ content: "first", allowedMentions: { parse: [] } });
    const reply = await incoming.reply({ content: "on it", allowedMentions: { repliedUser: false } });
    await reply.edit("done!");

    expect(posted.author.id).toBe(fake.botUser.id);
    expect(reply.reference?.messageId).toBe(incoming.id);
    const [first, second] = fake.botMessages(channelId);
    expect(first).toMatchObject({ id: posted.id, content: "first", body: { allowed_mentions: { parse: [] } } });
    expect(second).toMatchObject({ id: reply.id, content: "done!" });
    expect(second?.body.message_reference).toMatchObject({ message_id: incoming.id });
    expect(second?.body.allowed_mentions).toMatchObject({ replied_user: false });
    const edit = await fake.waitForRest((call) => call.method === "PATCH" && call.path === `/channels/${channelId}/messages/${reply.id}`);
    expect(edit.body.content).toBe("done!");
    // The fetched message matches what the fake stored.
    expect((await guildChannel(c, channelId).messages.fetch({ message: reply.id, force: true })).content).toBe("done!");
  });

  it("echoes the bot's own post back as MESSAGE_CREATE, as real Discord does", async () => {
    const c = await login();
    const echoed = once(c, Events.MessageCreate) as Promise<[Message]>;
    const sent = await guildChannel(c, fake.channelIds[0]!).send("talking to myself");
    const [echo] = await echoed;
    expect(echo.id).toBe(sent.id);
    expect(echo.author.id).toBe(fake.botUser.id);
  });

  it("answers heartbeats, so the client measures a ping instead of declaring a zombie", async () => {
    await fake.stop();
    fake = await FakeDiscord.start({ heartbeatIntervalMs: 50 });
    const c = await login();
    while (c.ws.ping < 0) await new Promise((resolve) => setTimeout(resolve, 20));
    await new Promise((resolve) => setTimeout(resolve, 200)); // several more beats
    expect(fake.resumes).toBe(0);
    expect(fake.identifies).toBe(1);
  });

  it("rejects what real Discord rejects: over-long, empty, and replies to unknown messages", async () => {
    const c = await login();
    const channel = guildChannel(c, fake.channelIds[0]!);
    await expect(channel.send("x".repeat(2001))).rejects.toMatchObject({ code: 50035, status: 400 });
    await expect(channel.send({ content: "" })).rejects.toMatchObject({ code: 50006 });
    await expect(channel.send({ content: "hi", reply: { messageReference: "1234567890123456789" } })).rejects.toMatchObject({ code: 50035 });
    const posted = await channel.send("x".repeat(2000));
    await expect(posted.edit({ content: "" })).rejects.toMatchObject({ code: 50006 });
    expect(fake.botMessages(fake.channelIds[0]!).map((m) => m.content.length)).toEqual([2000]);
  });

  it("parses payload_json and files from a multipart send", async () => {
    const c = await login();
    const channelId = fake.channelIds[0]!;
    const sent = await guildChannel(c, channelId).send({ content: "see file", files: [{ attachment: Buffer.from("hi"), name: "a.txt" }] });
    expect(sent.attachments.first()?.name).toBe("a.txt");
    const call = await fake.waitForRest((r) => r.method === "POST" && r.path === `/channels/${channelId}/messages`);
    expect(call.body.content).toBe("see file");
    expect(call.files).toEqual([expect.objectContaining({ filename: "a.txt", size: 2 })]);
  });

  it("answers typing with 204", async () => {
    const c = await login();
    await guildChannel(c, fake.channelIds[2]!).sendTyping();
    const call = await fake.waitForRest((r) => r.path === `/channels/${fake.channelIds[2]}/typing`);
    expect(call.status).toBe(204);
  });

  it("delivers a chat-input interaction and records its ephemeral reply, edit and follow-up", async () => {
    const c = await login();
    const chandler = fake.user({ name: "chandler" });
    const arrived = once(c, Events.InteractionCreate) as Promise<[ChatInputCommandInteraction]>;
    const sent = fake.sendInteraction({
      channelId: fake.channelIds[0]!, user: chandler, name: "model", permissions: ManageChannels,
      options: [{ name: "name", type: 3, value: "friends-lora" }],
    });
    const [interaction] = await arrived;
    expect(interaction.isChatInputCommand()).toBe(true);
    expect(interaction.commandName).toBe("model");
    expect(interaction.options.getString("name")).toBe("friends-lora");
    expect(interaction.user.id).toBe(chandler.id);
    expect(interaction.memberPermissions?.has("ManageChannels")).toBe(true);

    await interaction.reply({ content: "switched", flags: MessageFlags.Ephemeral });
    const callback = await fake.waitForRest((r) => r.path === `/interactions/${sent.id}/${sent.token}/callback`);
    expect(callback.headers.authorization).toBeUndefined();
    expect(callback.body).toMatchObject({ type: 4, data: { content: "switched", flags: MessageFlags.Ephemeral } });

    const edited = await interaction.editReply("switched!");
    expect(edited.content).toBe("switched!");
    expect(fake.rest.some((r) => r.method === "PATCH" && r.path.endsWith(`/${sent.token}/messages/@original`))).toBe(true);
    const followUp = await interaction.followUp("and another thing");
    expect(followUp.content).toBe("and another thing");
  });

  it("delivers a DM interaction with a user and no member", async () => {
    const c = await login();
    const phoebe = fake.user({ name: "phoebe" });
    const arrived = once(c, Events.InteractionCreate) as Promise<[ChatInputCommandInteraction]>;
    fake.sendInteraction({ channelId: fake.channelIds[0]!, user: phoebe, name: "help", dm: true });
    const [interaction] = await arrived;
    expect(interaction.inGuild()).toBe(false);
    expect(interaction.user.id).toBe(phoebe.id);
    expect(interaction.channel?.isDMBased()).toBe(true);
    await interaction.deferReply();
    expect((await interaction.editReply("smelly cat")).content).toBe("smelly cat");
  });

  it("registers guild and global commands through the PUT routes", async () => {
    const c = await login();
    const guildSet = await c.application.commands.set([{ name: "model", description: "Switch model" }], fake.guildId);
    expect(guildSet.first()?.guildId).toBe(fake.guildId);
    const put = await fake.waitForRest((r) => r.method === "PUT" && r.path === `/applications/${fake.applicationId}/guilds/${fake.guildId}/commands`);
    expect(put.body).toEqual([expect.objectContaining({ name: "model", description: "Switch model" })]);
    await c.application.commands.set([{ name: "help", description: "Help" }]);
    const fetched = await c.application.commands.fetch();
    expect([...fetched.values()].map((cmd) => cmd.name)).toEqual(["help"]);
  });

  it("resumes after a dropped connection and delivers messages injected meanwhile", async () => {
    const c = await login();
    const resumed = once(c, Events.ShardResume);
    fake.dropConnection();
    const whileDown = nextHumanMessage(c);
    fake.sendMessage({ channelId: fake.channelIds[0]!, author: fake.user({ name: "gunther" }), content: "while you were out" });
    await resumed;
    expect(fake.resumes).toBe(1);
    expect(fake.identifies).toBe(1);
    expect((await whileDown).content).toBe("while you were out");
    const after = nextHumanMessage(c);
    fake.sendMessage({ channelId: fake.channelIds[0]!, author: fake.user({ name: "janice" }), content: "oh my god" });
    expect((await after).content).toBe("oh my god");
  });

  it("makes discord.js wait out an injected 429 and retry", async () => {
    const c = await login();
    const channelId = fake.channelIds[3]!;
    fake.rateLimitNext((r) => r.method === "POST" && r.path === `/channels/${channelId}/messages`, 1, 0.1);
    const started = Date.now();
    await guildChannel(c, channelId).send("eventually");
    expect(Date.now() - started).toBeGreaterThanOrEqual(100);
    expect(fake.rest.filter((r) => r.path === `/channels/${channelId}/messages`).map((r) => r.status)).toEqual([429, 200]);
    expect(fake.botMessages(channelId).map((m) => m.content)).toEqual(["eventually"]);
  });

  it("announces channels added after login with CHANNEL_CREATE", async () => {
    const c = await login();
    const created = once(c, Events.ChannelCreate);
    const id = fake.addChannel("moondance-diner");
    await created;
    expect(guildChannel(c, id).name).toBe("moondance-diner");
  });

  it("dispatches a user's deletes, bulk deletes and edits as real Discord does; discord.js reports uncached ones only with Partials.Message", async () => {
    const c = new Client({
      intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages, GatewayIntentBits.MessageContent],
      partials: [Partials.Channel, Partials.Message],
      rest: { api: fake.apiUrl },
      makeCache: Options.cacheWithLimits({ ...Options.DefaultMakeCacheSettings, MessageManager: 0 }), // every message unknown to discord.js
    });
    client = c;
    const ready = once(c, Events.ClientReady);
    await c.login(fake.token);
    await ready;
    const channelId = fake.channelIds[0]!;
    const author = fake.user({ name: "ross" });
    const [one, two, three] = ["one", "two", "three"].map((content) => fake.sendMessage({ channelId, author, content }));
    const deleted = once(c, Events.MessageDelete);
    fake.deleteMessage(one!.id);
    const [gone] = (await deleted) as [Message];
    expect([gone.id, gone.channelId, gone.partial]).toEqual([one!.id, channelId, true]);
    const bulk = once(c, Events.MessageBulkDelete);
    fake.bulkDelete(channelId, [two!.id]);
    const [messages] = (await bulk) as [Collection<string, Message>];
    expect([...messages.keys()]).toEqual([two!.id]);
    const updated = once(c, Events.MessageUpdate);
    fake.editMessage(three!.id, "three, edited");
    const [, edited] = (await updated) as [Message, Message];
    expect([edited.id, edited.content, edited.partial, edited.author.id]).toEqual([three!.id, "three, edited", false, author.id]);
    expect(fake.rest.filter((r) => r.path.includes(three!.id))).toEqual([]); // nothing fetched to report them
  });

  it("deletes channels and threads (CHANNEL_DELETE, THREAD_DELETE), and a guild that removed the bot (GUILD_DELETE) denies access", async () => {
    const parent = fake.channelIds[1]!;
    const thread = fake.addThread(parent, "central-perk-thread");
    const c = await login();
    expect(c.channels.cache.get(thread)?.isThread()).toBe(true);
    const threadGone = once(c, Events.ThreadDelete);
    fake.deleteChannel(thread);
    expect(((await threadGone) as [{ id: string }])[0].id).toBe(thread);
    const channelGone = once(c, Events.ChannelDelete);
    fake.deleteChannel(parent);
    expect(((await channelGone) as [{ id: string }])[0].id).toBe(parent);
    expect(fake.channelIds).not.toContain(parent);
    const left = once(c, Events.GuildDelete);
    fake.leaveGuild();
    const [guild] = (await left) as [{ id: string; available: boolean }];
    expect(guild.id).toBe(fake.guildId);
    expect(c.guilds.cache.has(fake.guildId)).toBe(false);
    const survivor = fake.channelIds[0]!;
    await expect(c.rest.post(`/channels/${survivor}/messages`, { body: { content: "hello?" } })).rejects.toThrow(/Missing Access/);
  });

  it("rejects waitForRest with the recorded calls when nothing matches", async () => {
    await login();
    await expect(fake.waitForRest((r) => r.path === "/never", 50)).rejects.toThrow(/GET \/gateway\/bot/);
  });
});

describe("FakeDiscord webhooks, as Discord does them", () => {
  it("creates and lists a channel's webhooks, executes with ?wait=true under any name, edits and deletes its messages, and echoes them with webhook_id", async () => {
    const c = await login();
    const channel = fake.channelIds[0]!;
    const created = (await c.rest.post(Routes.channelWebhooks(channel), { body: { name: "Friend cast" } })) as { id: string; token: string; channel_id: string };
    expect(created.channel_id).toBe(channel);
    const listed = (await c.rest.get(Routes.channelWebhooks(channel))) as { id: string; token?: string }[];
    expect(listed).toEqual([expect.objectContaining({ id: created.id, token: created.token })]);
    // Another application's webhook is listed without its token.
    const foreign = fake.addForeignWebhook(channel);
    expect(((await c.rest.get(Routes.channelWebhooks(channel))) as { id: string; token?: string }[]).find((w) => w.id === foreign.id)!.token).toBeUndefined();

    const echoed = new Promise<Message>((resolve) => c.on(Events.MessageCreate, (m) => m.webhookId && resolve(m)));
    const posted = (await c.rest.post(Routes.webhook(created.id, created.token), { body: { content: "hey", username: "Joey" }, query: new URLSearchParams({ wait: "true" }), auth: false })) as { id: string; webhook_id: string; author: { id: string; username: string; bot: boolean } };
    expect(posted).toMatchObject({ webhook_id: created.id, author: { id: created.id, username: "Joey", bot: true } });
    const gateway = await echoed;
    expect(gateway.webhookId).toBe(created.id);
    expect(gateway.author.username).toBe("Joey");
    // Without wait, Discord answers 204 and no message.
    await c.rest.post(Routes.webhook(created.id, created.token), { body: { content: "no wait" }, auth: false });
    expect(fake.rest.at(-1)).toMatchObject({ status: 204, body: { content: "no wait" } });

    await c.rest.patch(Routes.webhookMessage(created.id, created.token, posted.id), { body: { content: "edited" }, auth: false });
    expect(fake.webhookMessages(channel)[0]!.content).toBe("edited");
    // A webhook edits only its own messages.
    const other = (await c.rest.post(Routes.webhook(foreign.id, foreign.token), { body: { content: "x" }, query: new URLSearchParams({ wait: "true" }), auth: false })) as { id: string };
    await expect(c.rest.patch(Routes.webhookMessage(created.id, created.token, other.id), { body: { content: "y" }, auth: false })).rejects.toMatchObject({ code: 10008 });
    await c.rest.delete(Routes.webhookMessage(created.id, created.token, posted.id), { auth: false });
    expect(fake.webhookMessages(channel).map((m) => m.id)).not.toContain(posted.id);
    await expect(c.rest.post(Routes.webhook(created.id, "wrong-token"), { body: { content: "x" }, auth: false })).rejects.toMatchObject({ code: 50027 });
  });

  it("posts into a thread with thread_id through the parent's webhook, and edits there only with it", async () => {
    const c = await login();
    const parent = fake.channelIds[0]!;
    const thread = fake.addThread(parent);
    await expect(c.rest.post(Routes.channelWebhooks(thread), { body: { name: "hook" } })).rejects.toMatchObject({ code: 50024 });
    const hook = (await c.rest.post(Routes.channelWebhooks(parent), { body: { name: "hook" } })) as { id: string; token: string };
    const posted = (await c.rest.post(Routes.webhook(hook.id, hook.token), { body: { content: "in the thread" }, query: new URLSearchParams({ wait: "true", thread_id: thread }), auth: false })) as { id: string; channel_id: string };
    expect(posted.channel_id).toBe(thread);
    await expect(c.rest.patch(Routes.webhookMessage(hook.id, hook.token, posted.id), { body: { content: "x" }, auth: false })).rejects.toMatchObject({ code: 10008 });
    await c.rest.patch(Routes.webhookMessage(hook.id, hook.token, posted.id), { body: { content: "edited" }, query: new URLSearchParams({ thread_id: thread }), auth: false });
    expect(fake.webhookMessages(thread)[0]!.content).toBe("edited");
    // A thread of another channel is refused.
    const elsewhere = fake.addThread(fake.channelIds[1]!);
    await expect(c.rest.post(Routes.webhook(hook.id, hook.token), { body: { content: "x" }, query: new URLSearchParams({ thread_id: elsewhere }), auth: false })).rejects.toMatchObject({ code: 10003 });
  });

  it("answers 404 Unknown Webhook after a deletion, 403 without Manage Webhooks, and 30007 at the per-channel limit", async () => {
    const c = await login();
    const [a, b] = fake.channelIds as [string, string];
    const hook = (await c.rest.post(Routes.channelWebhooks(a), { body: { name: "hook" } })) as { id: string; token: string };
    fake.deleteWebhook(hook.id);
    await expect(c.rest.post(Routes.webhook(hook.id, hook.token), { body: { content: "x" }, auth: false })).rejects.toMatchObject({ code: 10015, status: 404 });
    fake.denyManageWebhooks(b);
    await expect(c.rest.post(Routes.channelWebhooks(b), { body: { name: "hook" } })).rejects.toMatchObject({ code: 50013, status: 403 });
    for (let i = 0; i < 15; i++) fake.addForeignWebhook(a);
    await expect(c.rest.post(Routes.channelWebhooks(a), { body: { name: "hook" } })).rejects.toMatchObject({ code: 30007, status: 400 });
  });

  it("rate-limits each webhook to about 5 posts per 2 s: the 6th waits out its 429, the others' buckets are their own", async () => {
    const c = await login();
    const [a, b] = fake.channelIds as [string, string];
    const one = (await c.rest.post(Routes.channelWebhooks(a), { body: { name: "one" } })) as { id: string; token: string };
    const two = (await c.rest.post(Routes.channelWebhooks(b), { body: { name: "two" } })) as { id: string; token: string };
    const post = (hook: { id: string; token: string }, i: number) => c.rest.post(Routes.webhook(hook.id, hook.token), { body: { content: `line ${i}` }, query: new URLSearchParams({ wait: "true" }), auth: false });
    const started = Date.now();
    await Promise.all([...[0, 1, 2, 3, 4, 5].map((i) => post(one, i)), post(two, 0)]);
    expect(fake.webhookMessages(a).map((m) => m.content).sort()).toEqual([0, 1, 2, 3, 4, 5].map((i) => `line ${i}`));
    // discord.js paced the sixth from the bucket's headers (or a 429's retry_after): it landed a window later.
    const sixth = fake.rest.filter((r) => r.path === `/webhooks/${one.id}/${one.token}` && r.status === 200).at(-1)!;
    expect(sixth.at - started).toBeGreaterThanOrEqual(1500);
    expect(fake.webhookMessages(b)).toHaveLength(1);
  });
});
