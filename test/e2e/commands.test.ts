import { afterEach, describe, expect, it } from "vitest";
import { FakeDiscord } from "../fakes/discord.ts";
import { eventually, interactionReply, startWorld, useTinyModels, type World } from "./harness.ts";

const MANAGE_CHANNELS = (1n << 4n).toString();
const MANAGE_MESSAGES = (1n << 13n).toString();
const NOTHING = "0";

const tiny = useTinyModels();

let world: World | undefined;
afterEach(async () => {
  await world?.stop();
  world = undefined;
});

const localEnv = tiny.env;

describe("slash command registration", () => {
  it("registers /model, /persona, /reset, /scene, /status and /forget in the configured guild with one bulk PUT", async () => {
    const discord = await FakeDiscord.start();
    world = await startWorld({ discord, env: { DISCORD_GUILD_ID: discord.guildId } });
    const put = await discord.waitForRest((c) => c.method === "PUT" && c.path.includes("/commands"));
    expect(put.path).toBe(`/applications/${discord.applicationId}/guilds/${discord.guildId}/commands`);
    expect(discord.rest.filter((c) => c.method === "PUT" && c.path.includes("/commands"))).toHaveLength(1);
    const byName = Object.fromEntries(put.body.map((c: { name: string }) => [c.name, c]));
    expect(Object.keys(byName).sort()).toEqual(["forget", "model", "persona", "reset", "scene", "status"]);
    expect(byName.model.default_member_permissions).toBe(MANAGE_CHANNELS);
    expect(byName.forget.default_member_permissions).toBeUndefined(); // a user's own right: everyone may use it
    expect(byName.model.options).toEqual([
      expect.objectContaining({ name: "backend", type: 3, required: false, choices: [{ name: "openai", value: "openai" }, { name: "local", value: "local" }] }),
    ]);
  });

  it("registers globally without DISCORD_GUILD_ID", async () => {
    world = await startWorld();
    const put = await world.discord.waitForRest((c) => c.method === "PUT" && c.path.includes("/commands"));
    expect(put.path).toBe(`/applications/${world.discord.applicationId}/commands`);
  });
});

describe("/model", () => {
  it("shows the current backend, refuses members without Manage Channels, and switches for those with it", async () => {
    world = await startWorld({ env: localEnv() });
    const { discord, store } = { discord: world.discord, store: world.friend.store };
    const [channel, other] = discord.channelIds as [string, string];
    const member = discord.user({ name: "member" });
    const mod = discord.user({ name: "mod" });

    const show = discord.sendInteraction({ channelId: channel, user: member, name: "model", permissions: NOTHING });
    expect((await interactionReply(discord, show.token)).content).toMatch(/This channel uses \*\*openai\*\* \(`ft:gpt-3.5-turbo-0125:friends::test`\)/);

    const refused = discord.sendInteraction({ channelId: channel, user: member, name: "model", options: [{ name: "backend", type: 3, value: "local" }], permissions: NOTHING });
    const refusal = await interactionReply(discord, refused.token);
    expect(refusal.content).toMatch(/Manage Channels/);
    expect(refusal.flags).toBe(64);
    expect(store.getBackend(channel)).toBeUndefined();

    const allowed = discord.sendInteraction({ channelId: channel, user: mod, name: "model", options: [{ name: "backend", type: 3, value: "local" }], permissions: MANAGE_CHANNELS });
    expect((await interactionReply(discord, allowed.token)).content).toMatch(/Switched this channel to \*\*local\*\* \(`tiny-script.gguf`/);
    expect(store.getBackend(channel)).toBe("local");
    expect(store.getBackend(other)).toBeUndefined();

    // Routing: the next message here is answered by the local model; the other channel still uses OpenAI.
    world.openai.otherwise(() => ({ text: "from openai" }));
    discord.sendMessage({ channelId: channel, author: member, content: `<@${discord.botUser.id}> hey`, mentions: [discord.botUser as never] });
    discord.sendMessage({ channelId: other, author: member, content: `<@${discord.botUser.id}> hey`, mentions: [discord.botUser as never] });
    await eventually(() => discord.botMessages(other)[0]?.content === "from openai", "the OpenAI answer elsewhere", 20_000);
    await eventually(() => discord.botMessages(channel)[0]?.content === "Oh, I don't know.", "the local model's cleaned answer", 20_000);
    expect(world.openai.requests).toHaveLength(1);
  });

  it("lets anyone switch in a DM", async () => {
    world = await startWorld({ env: localEnv() });
    const { discord } = world;
    const user = discord.user({ name: "dm-user" });
    const i = discord.sendInteraction({ channelId: "", user, name: "model", options: [{ name: "backend", type: 3, value: "local" }], dm: true });
    expect((await interactionReply(discord, i.token)).content).toMatch(/Switched this channel to \*\*local\*\*/);
    expect(world.friend.store.getBackend(discord.dmChannelId(user))).toBe("local");
  });

  it("refuses to switch to a local model that cannot load, with the reason, and changes nothing", async () => {
    world = await startWorld({ env: localEnv({ LLAMA_MODEL_PATH: tiny.models().notGguf }) });
    const { discord } = world;
    const channel = discord.channelIds[0]!;
    const i = discord.sendInteraction({ channelId: channel, user: discord.user({ name: "mod" }), name: "model", options: [{ name: "backend", type: 3, value: "local" }], permissions: MANAGE_CHANNELS });
    const reply = await interactionReply(discord, i.token);
    expect(reply.content).toMatch(/Can't switch to \*\*local\*\*: .*not-a-model\.gguf.*GGUF/);
    expect(reply.content).toMatch(/still uses \*\*openai\*\*/);
    expect(world.friend.store.getBackend(channel)).toBeUndefined();
  });
});

describe("/reset and /status", () => {
  it("/reset empties the next prompt; /status shows the channel's state in an embed", async () => {
    world = await startWorld();
    const { discord, openai } = world;
    const channel = discord.channelIds[0]!;
    const alice = discord.user({ name: "alice", globalName: "Alice" });
    openai.otherwise((r) => ({ text: `re ${r.body.messages.at(-1)!.content}` }));
    for (const text of ["one", "two"]) {
      discord.sendMessage({ channelId: channel, author: alice, content: `<@${discord.botUser.id}> ${text}`, mentions: [discord.botUser as never] });
      await eventually(() => discord.botMessages(channel).some((m) => m.content === `re ${text}`), `answer to ${text}`);
    }
    // An exchange joins the window once Discord has confirmed the post, a moment after the fake saw it.
    await eventually(() => world!.logs.lines.filter((l) => l.msg === "answered").length === 2, "both exchanges remembered");
    const status = discord.sendInteraction({ channelId: channel, user: alice, name: "status" });
    const embed = (await interactionReply(discord, status.token)).embeds![0] as { fields: { name: string; value: string }[] };
    const field = (name: string) => embed.fields.find((f) => f.name === name)?.value;
    expect(field("Backend here")).toBe("openai");
    expect(field("OpenAI model")).toBe("ft:gpt-3.5-turbo-0125:friends::test");
    expect(field("Window")).toMatch(/^4 turns, \d+ tokens$/);
    expect(field("Local model loaded")).toBe("no");
    expect(field("Version")).toBe("0.1.0");
    expect(field("Kept for")).toBe("30 days");

    const reset = discord.sendInteraction({ channelId: channel, user: alice, name: "reset", permissions: MANAGE_MESSAGES });
    expect((await interactionReply(discord, reset.token)).content).toMatch(/forgot the last 4 turns/);
    discord.sendMessage({ channelId: channel, author: alice, content: `<@${discord.botUser.id}> three`, mentions: [discord.botUser as never] });
    await eventually(() => openai.requests.length === 3, "the third request");
    expect(openai.requests[2]!.body.messages.slice(1)).toEqual([{ role: "user", name: "Alice", content: "three" }]);
  });
});
