import Database from "better-sqlite3";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { SqliteStore } from "../../src/store/sqlite.ts";
import { FakeDiscord, type FakeUser } from "../fakes/discord.ts";
import { eventually, handled, interactionReply, startWorld, type World } from "./harness.ts";

let worlds: World[] = [];
afterEach(async () => {
  for (const world of worlds.reverse()) await world.stop();
  worlds = [];
});
async function start(options: Parameters<typeof startWorld>[0] = {}): Promise<World> {
  const world = await startWorld(options);
  worlds.push(world);
  return world;
}

const mention = (discord: FakeDiscord, text: string) => ({ content: `<@${discord.botUser.id}> ${text}`, mentions: [discord.botUser as never] });
const replyTo = (discord: FakeDiscord, channel: string, messageId: string) =>
  discord.botMessages(channel).filter((m) => m.body.message_reference?.message_id === messageId);
/** The texts of the last request to the model, without the system prompt. */
const lastPrompt = (world: World) => world.openai.requests.at(-1)!.body.messages.slice(1).map((m) => m.content);
const dbFile = () => join(mkdtempSync(join(tmpdir(), "friend-lifetime-")), "friend.db");
/** Rows of every table that mention one of `ids` in any of its id columns. */
function rowsAbout(path: string, ids: readonly string[]): Record<string, number> {
  const db = new Database(path, { readonly: true });
  const list = ids.map((id) => `'${id}'`).join(", ");
  const count = (sql: string) => (db.prepare(sql).get() as { n: number }).n;
  const found = {
    turns: count(`SELECT count(*) AS n FROM turns WHERE channel_id IN (${list})`),
    accepted: count(`SELECT count(*) AS n FROM accepted WHERE channel_id IN (${list})`),
    answered: count(`SELECT count(*) AS n FROM answered WHERE channel_id IN (${list})`),
    channels: count(`SELECT count(*) AS n FROM channels WHERE channel_id IN (${list})`),
    places: count(`SELECT count(*) AS n FROM places WHERE channel_id IN (${list}) OR guild_id IN (${list}) OR parent_id IN (${list})`),
  };
  db.close();
  return found;
}

/** Sends a message to Friend and waits until its answer is posted and remembered. */
async function exchange(world: World, channel: string, author: FakeUser, text: string, options: { dm?: boolean; reply?: string } = {}) {
  const { discord } = world;
  if (options.reply) world.openai.script({ text: options.reply });
  const answered = world.logs.lines.filter((l) => l.msg === "answered").length;
  const m = discord.sendMessage({ channelId: channel, author, ...(options.dm ? { content: text, dm: true } : mention(discord, text)) });
  await eventually(() => replyTo(discord, m.channel_id, m.id)[0]?.content === (options.reply ?? `re ${text}`), `the answer to "${text}"`);
  await eventually(() => world.logs.lines.filter((l) => l.msg === "answered").length > answered, `"${text}" remembered`);
  return m;
}

describe("deleting on Discord deletes from Friend", () => {
  it("a deleted message, or a bulk-deleted one, never reaches a later prompt, and leaves the database", async () => {
    const path = dbFile();
    const world = await start({ env: { FRIEND_DB_PATH: path } });
    const { discord, openai } = world;
    const channel = discord.channelIds[0]!;
    const alice = discord.user({ name: "alice", globalName: "Alice" });
    openai.otherwise((r) => ({ text: `re ${r.body.messages.at(-1)!.content}` }));
    const secret = await exchange(world, channel, alice, "my password is hunter2", { reply: "Noted." });
    const kept = await exchange(world, channel, alice, "the weather is nice");
    const bulk1 = await exchange(world, channel, alice, "bulk one");
    const bulk2 = await exchange(world, channel, alice, "bulk two");

    discord.deleteMessage(secret.id);
    discord.bulkDelete(channel, [bulk1.id, bulk2.id]);
    await eventually(() => world.friend.store.loadWindow(channel).length === 5, "the deleted turns gone");
    await exchange(world, channel, alice, "what did I say?");
    // Friend's replies are its own words, still on Discord: they stay.
    expect(lastPrompt(world)).toEqual(["Noted.", "the weather is nice", "re the weather is nice", "re bulk one", "re bulk two", "what did I say?"]);
    const db = new Database(path, { readonly: true });
    expect(db.prepare("SELECT count(*) AS n FROM turns WHERE text LIKE '%hunter2%'").get()).toEqual({ n: 0 });
    expect(db.prepare("SELECT count(*) AS n FROM turns WHERE text IN ('bulk one', 'bulk two')").get()).toEqual({ n: 0 });
    db.close();
    expect(world.friend.store.loadWindow(channel).map((t) => t.messageId)).toContain(kept.id);
  });

  it("deleted while it is being answered: the reply stops, the begun reply is deleted, and the message never reaches a prompt", async () => {
    const world = await start();
    const { discord, openai } = world;
    const channel = discord.channelIds[0]!;
    const alice = discord.user({ name: "alice", globalName: "Alice" });
    openai.script({ text: "Oh my god, you will not believe what happened to me at the coffee house today, it was wild.", chunkDelayMs: 150 });
    openai.otherwise((r) => ({ text: `re ${r.body.messages.at(-1)!.content}` }));
    const m = discord.sendMessage({ channelId: channel, author: alice, ...mention(discord, "oops, wrong window") });
    await discord.waitForRest((c) => c.method === "POST" && c.body?.message_reference?.message_id === m.id);
    const [begun] = replyTo(discord, channel, m.id);
    discord.deleteMessage(m.id);
    await discord.waitForRest((c) => c.method === "DELETE" && c.path === `/channels/${channel}/messages/${begun!.id}`);
    const callsAfter = discord.rest.length;
    await new Promise((r) => setTimeout(r, 600)); // the stream would have edited the reply by now
    expect(discord.rest.slice(callsAfter).filter((c) => c.path.includes("/messages"))).toEqual([]);
    expect(discord.botMessages(channel)).toEqual([]);

    await exchange(world, channel, alice, "hello again");
    expect(lastPrompt(world)).toEqual(["hello again"]);
    expect(world.friend.store.unanswered()).toEqual([]);
  });
});

describe("mid-reply", () => {
  const SLOW = "Could this BE any longer of a reply? I am still typing it, slowly, one word at a time.";

  it("a deleted message coalesced with another: the begun reply goes, and the other is answered on its own", async () => {
    const world = await start();
    const { discord, openai } = world;
    const channel = discord.channelIds[0]!;
    const [alice, bob] = [discord.user({ name: "alice", globalName: "Alice" }), discord.user({ name: "bob", globalName: "Bob" })];
    openai.script({ text: SLOW, chunkDelayMs: 60 }, { text: SLOW, chunkDelayMs: 150 });
    openai.otherwise((r) => ({ text: `re ${r.body.messages.at(-1)!.content}` }));
    const first = discord.sendMessage({ channelId: channel, author: bob, ...mention(discord, "first") });
    await eventually(() => openai.requests.length === 1, "the first request");
    const deleted = discord.sendMessage({ channelId: channel, author: alice, ...mention(discord, "never mind this") });
    const kept = discord.sendMessage({ channelId: channel, author: bob, ...mention(discord, "but answer this") });
    await eventually(() => openai.requests.length === 2, "the coalesced request");
    expect(lastPrompt(world).slice(-2)).toEqual(["never mind this", "but answer this"]);
    await discord.waitForRest((c) => c.method === "POST" && c.body?.message_reference?.message_id === kept.id);
    discord.deleteMessage(deleted.id);
    await eventually(() => replyTo(discord, channel, kept.id).map((m) => m.content).join("|") === "re but answer this", "the kept message answered on its own");
    expect(lastPrompt(world)).toEqual(["first", SLOW, "but answer this"]);
    expect(replyTo(discord, channel, first.id)[0]?.content).toBe(SLOW);
  });

  /** Alice asks Friend `text` in the first channel; resolves once its slow reply has begun on Discord. Later requests are answered "re <text>". */
  async function replyBegun(world: World, text: string) {
    const { discord, openai } = world;
    const channel = discord.channelIds[0]!;
    const alice = discord.user({ name: "alice", globalName: "Alice" });
    openai.script({ text: SLOW, chunkDelayMs: 150 });
    openai.otherwise((r) => ({ text: `re ${r.body.messages.at(-1)!.content}` }));
    const m = discord.sendMessage({ channelId: channel, author: alice, ...mention(discord, text) });
    await discord.waitForRest((c) => c.method === "POST" && c.body?.message_reference?.message_id === m.id);
    return { discord, channel, alice, m };
  }

  it("a message edited while its reply streams: the begun reply goes, and the new text is answered", async () => {
    const world = await start();
    const { discord, channel, alice, m } = await replyBegun(world, "how are you");
    discord.editMessage(m.id, `<@${discord.botUser.id}> how are YOU`, { mentions: [discord.botUser] });
    await eventually(() => replyTo(discord, channel, m.id).map((r) => r.content).join("|") === "re how are YOU", "the answer to the new text, alone");
    expect(lastPrompt(world)).toEqual(["how are YOU"]);
    await eventually(() => world.friend.store.loadWindow(channel).length === 2, "the exchange remembered");
    expect(world.friend.store.loadWindow(channel).map((t) => t.text)).toEqual(["how are YOU", "re how are YOU"]);
  });

  it("/forget while Friend is answering the user: the reply is withdrawn and nothing of theirs is kept", async () => {
    const world = await start();
    const { discord, channel, alice, m } = await replyBegun(world, "tell me a secret");
    const forget = discord.sendInteraction({ channelId: channel, user: alice, name: "forget" });
    expect((await interactionReply(discord, forget.token)).content).toBe("Done. I forgot 1 message of yours I hadn't answered yet, in 1 channel.");
    await eventually(() => replyTo(discord, channel, m.id).length === 0, "the begun reply deleted");
    await new Promise((r) => setTimeout(r, 500));
    expect(replyTo(discord, channel, m.id)).toEqual([]);
    expect(world.friend.store.loadWindow(channel)).toEqual([]);
    expect(world.friend.store.unanswered()).toEqual([]);
  });
});

describe("messages discord.js no longer holds", () => {
  it("after a restart (an empty message cache), a delete and an edit of an answered message still reach Friend", async () => {
    const discord = await FakeDiscord.start();
    const path = dbFile();
    const channel = discord.channelIds[0]!;
    const alice = discord.user({ name: "alice", globalName: "Alice" });
    const first = await startWorld({ discord, env: { FRIEND_DB_PATH: path } });
    first.openai.otherwise(() => ({ text: "Okay." }));
    const deleted = await exchange(first, channel, alice, "delete me later", { reply: "Okay." });
    const edited = await exchange(first, channel, alice, "edit me later", { reply: "Okay." });
    await first.friend.stop();
    await first.openai.stop();

    const second = await start({ discord, env: { FRIEND_DB_PATH: path } });
    second.openai.otherwise((r) => ({ text: `re ${r.body.messages.at(-1)!.content}` }));
    discord.deleteMessage(deleted.id);
    discord.editMessage(edited.id, `<@${discord.botUser.id}> edited after the restart`, { mentions: [discord.botUser] });
    await eventually(() => second.friend.store.loadWindow(channel).map((t) => t.text).join("|") === "Okay.|edited after the restart|Okay.", "the delete and the edit applied");
    await exchange(second, channel, alice, "and now?");
    expect(lastPrompt(second)).toEqual(["Okay.", "edited after the restart", "Okay.", "and now?"]);
  });
});

describe("edits count", () => {
  it("a message edited while it waits is answered with its new text", async () => {
    const world = await start();
    const { discord, openai } = world;
    const channel = discord.channelIds[0]!;
    const alice = discord.user({ name: "alice", globalName: "Alice" });
    openai.script({ text: "Take your time, I am still thinking about the first thing you said.", chunkDelayMs: 100 });
    openai.otherwise((r) => ({ text: `re ${r.body.messages.at(-1)!.content}` }));
    discord.sendMessage({ channelId: channel, author: alice, ...mention(discord, "first") });
    await eventually(() => openai.requests.length === 1, "the first request");
    const waiting = discord.sendMessage({ channelId: channel, author: alice, ...mention(discord, "teh typo") });
    await handled(world, waiting.id);
    discord.editMessage(waiting.id, `<@${discord.botUser.id}> the typo, fixed`, { mentions: [discord.botUser] });
    await eventually(() => replyTo(discord, channel, waiting.id)[0]?.content === "re the typo, fixed", "the answer to the edited text");
    expect(openai.requests.flatMap((r) => r.body.messages.map((m) => m.content))).not.toContain("teh typo");
  });

  it("an answered message edited later: the model sees its new text; edited to drop the mention, it is forgotten", async () => {
    const world = await start();
    const { discord, openai } = world;
    const channel = discord.channelIds[0]!;
    const alice = discord.user({ name: "alice", globalName: "Alice" });
    openai.otherwise((r) => ({ text: `re ${r.body.messages.at(-1)!.content}` }));
    const first = await exchange(world, channel, alice, "I love Ross");
    const second = await exchange(world, channel, alice, "call me tonight");
    discord.editMessage(first.id, `<@${discord.botUser.id}> I love Joey`, { mentions: [discord.botUser] });
    discord.editMessage(second.id, "never mind", { mentions: [] });
    await eventually(() => world.friend.store.loadWindow(channel).some((t) => t.text === "I love Joey"), "the edit saved");
    await eventually(() => !world.friend.store.loadWindow(channel).some((t) => t.text === "call me tonight"), "the unmentioned message forgotten");
    await exchange(world, channel, alice, "who do I love?");
    expect(lastPrompt(world)).toEqual(["I love Joey", "re I love Ross", "re call me tonight", "who do I love?"]);
  });
});

describe("/forget", () => {
  it("empties every window that held the user's words, in every channel and DM, from a channel where Friend is switched off, and leaves other users' turns", async () => {
    const discord = await FakeDiscord.start();
    const denied = discord.channelIds[3]!;
    const path = dbFile();
    const world = await start({ discord, env: { FRIEND_DENY_CHANNELS: denied, FRIEND_DB_PATH: path } });
    const { openai } = world;
    const [c1, c2] = discord.channelIds as [string, string];
    const alice = discord.user({ name: "alice", globalName: "Alice" });
    const bob = discord.user({ name: "bob", globalName: "Bob" });
    openai.otherwise((r) => ({ text: `re ${r.body.messages.at(-1)!.content}` }));
    await exchange(world, c1, alice, "alice in one");
    await exchange(world, c1, bob, "bob in one");
    await exchange(world, c2, alice, "alice in two");
    const dm = await exchange(world, "dm", alice, "alice in private", { dm: true });

    const forget = discord.sendInteraction({ channelId: denied, user: alice, name: "forget" });
    const answer = await interactionReply(discord, forget.token);
    expect(answer.flags).toBe(64);
    expect(answer.content).toBe("Done. I forgot 3 messages of yours and 3 of my replies to you, in 3 channels.");

    await exchange(world, c1, bob, "bob again");
    expect(lastPrompt(world)).toEqual(["bob in one", "re bob in one", "bob again"]);
    await exchange(world, c2, bob, "anyone here?");
    expect(lastPrompt(world)).toEqual(["anyone here?"]);
    await exchange(world, "dm", alice, "hi again", { dm: true });
    expect(lastPrompt(world)).toEqual(["hi again"]);
    const db = new Database(path, { readonly: true });
    expect(db.prepare("SELECT count(*) AS n FROM turns WHERE text LIKE '%alice in%'").get()).toEqual({ n: 0 });
    db.close();
    expect(dm.channel_id).not.toBe(c1);
  });

  it("works in a DM even when Friend does not answer DMs", async () => {
    const world = await start({ env: { FRIEND_ALLOW_DMS: "false" } });
    const { discord } = world;
    const alice = discord.user({ name: "alice", globalName: "Alice" });
    const forget = discord.sendInteraction({ channelId: discord.channelIds[0]!, user: alice, name: "forget", dm: true });
    expect((await interactionReply(discord, forget.token)).content).toBe("I had nothing of yours to forget.");
  });
});

describe("retention", () => {
  it("drops turns older than FRIEND_RETENTION_DAYS across a restart; newer ones stay", async () => {
    const discord = await FakeDiscord.start();
    const path = dbFile();
    const channel = discord.channelIds[0]!;
    const alice = discord.user({ name: "alice", globalName: "Alice" });
    // An exchange from 40 days ago, as Friend stored it then.
    const seeded = new SqliteStore({ path });
    const then = Date.now() - 40 * 86_400_000;
    seeded.complete(channel, [{ author: "Alice", text: "forty days ago", fromFriend: false, at: then, authorId: alice.id, messageId: "100000000000000001" }], {
      author: "Friend", text: "re forty days ago", fromFriend: true, at: then + 1000, answered: [alice.id],
    });
    seeded.close();

    const first = await startWorld({ discord, env: { FRIEND_DB_PATH: path, FRIEND_RETENTION_DAYS: "60" } });
    first.openai.otherwise((r) => ({ text: `re ${r.body.messages.at(-1)!.content}` }));
    await exchange(first, channel, alice, "today");
    expect(lastPrompt(first)).toEqual(["forty days ago", "re forty days ago", "today"]); // within 60 days: kept
    await first.friend.stop();
    await first.openai.stop();

    const second = await start({ discord, env: { FRIEND_DB_PATH: path, FRIEND_RETENTION_DAYS: "30" } });
    second.openai.otherwise((r) => ({ text: `re ${r.body.messages.at(-1)!.content}` }));
    await exchange(second, channel, alice, "after the restart");
    expect(lastPrompt(second)).toEqual(["today", "re today", "after the restart"]);
    const db = new Database(path, { readonly: true });
    expect(db.prepare("SELECT count(*) AS n FROM turns WHERE text LIKE '%forty days ago%'").get()).toEqual({ n: 0 });
    db.close();
  });
});

describe("leaving", () => {
  it("after CHANNEL_DELETE or THREAD_DELETE nothing of that channel is left in the database; a reply in flight there stops unposted", async () => {
    const path = dbFile();
    const world = await start({ env: { FRIEND_DB_PATH: path } });
    const { discord, openai } = world;
    const [doomed, kept] = [discord.channelIds[0]!, discord.channelIds[1]!];
    const withThread = discord.channelIds[2]!;
    const threadId = discord.addThread(withThread);
    const alice = discord.user({ name: "alice", globalName: "Alice" });
    openai.otherwise((r) => ({ text: `re ${r.body.messages.at(-1)!.content}` }));
    await exchange(world, doomed, alice, "in the doomed channel");
    await exchange(world, kept, alice, "in the kept channel");
    await exchange(world, threadId, alice, "in a thread");
    const model = discord.sendInteraction({ channelId: doomed, user: alice, name: "model", options: [{ name: "backend", type: 3, value: "openai" }], permissions: (1n << 4n).toString() });
    await interactionReply(discord, model.token);

    openai.script({ text: "This reply is still streaming when the channel goes away, and never lands.", chunkDelayMs: 150 });
    const inFlight = discord.sendMessage({ channelId: doomed, author: alice, ...mention(discord, "are you there?") });
    await discord.waitForRest((c) => c.method === "POST" && c.body?.message_reference?.message_id === inFlight.id);
    discord.deleteChannel(doomed);
    discord.deleteChannel(withThread);
    await eventually(() => Object.values(rowsAbout(path, [doomed, threadId, withThread])).every((n) => n === 0), "nothing left of the deleted channels");
    const posts = discord.rest.filter((c) => c.path.startsWith(`/channels/${doomed}/`)).length;
    await new Promise((r) => setTimeout(r, 500));
    expect(discord.rest.filter((c) => c.path.startsWith(`/channels/${doomed}/`)).length).toBe(posts);
    expect(world.friend.store.loadWindow(kept)).toHaveLength(2);
  });

  it("channels deleted and a server left while Friend was offline are forgotten at the next start; the rest stays", async () => {
    const discord = await FakeDiscord.start();
    const path = dbFile();
    const env = { FRIEND_DB_PATH: path };
    const first = await startWorld({ discord, env });
    first.openai.otherwise((r) => ({ text: `re ${r.body.messages.at(-1)!.content}` }));
    const alice = discord.user({ name: "alice", globalName: "Alice" });
    const [deleted, parent, kept] = discord.channelIds as [string, string, string];
    const thread = discord.addThread(parent);
    for (const channel of [deleted, parent, kept, thread]) await exchange(first, channel, alice, `hello in ${channel}`);
    const dm = await exchange(first, "dm", alice, "hello in private", { dm: true });
    expect(rowsAbout(path, [deleted, thread]).turns).toBe(4);
    await first.friend.stop();
    await first.openai.stop();
    discord.deleteChannel(deleted, { whileOffline: true });
    discord.deleteChannel(parent, { whileOffline: true }); // its thread goes with it

    const second = await startWorld({ discord, env });
    await eventually(() => Object.values(rowsAbout(path, [deleted, parent, thread])).every((n) => n === 0), "the channels deleted while offline forgotten");
    expect(second.friend.store.loadWindow(kept)).toHaveLength(2);
    await second.friend.stop();
    await second.openai.stop();

    discord.leaveGuild({ whileOffline: true });
    const third = await start({ discord, env });
    await eventually(() => Object.values(rowsAbout(path, [...discord.channelIds, discord.guildId])).every((n) => n === 0), "the server left while offline forgotten");
    expect(third.friend.store.loadWindow(dm.channel_id)).toHaveLength(2);
  });

  it("after GUILD_DELETE nothing of that server is left in the database; DMs stay", async () => {
    const path = dbFile();
    const world = await start({ env: { FRIEND_DB_PATH: path } });
    const { discord, openai } = world;
    const alice = discord.user({ name: "alice", globalName: "Alice" });
    openai.otherwise((r) => ({ text: `re ${r.body.messages.at(-1)!.content}` }));
    const threadId = discord.addThread(discord.channelIds[1]!);
    for (const channel of [...discord.channelIds.slice(0, 2), threadId]) await exchange(world, channel, alice, `hello in ${channel}`);
    const dm = await exchange(world, "dm", alice, "hello in private", { dm: true });
    const all = [...discord.channelIds, threadId, discord.guildId];
    discord.leaveGuild();
    await eventually(() => Object.values(rowsAbout(path, all)).every((n) => n === 0), "nothing left of the server");
    expect(world.friend.store.loadWindow(dm.channel_id)).toHaveLength(2);
  });
});
