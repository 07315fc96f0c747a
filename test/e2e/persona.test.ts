import { afterEach, describe, expect, it } from "vitest";
import { FakeDiscord } from "../fakes/discord.ts";
import { eventually, interactionReply, startWorld, type World } from "./harness.ts";

const MANAGE_CHANNELS = (1n << 4n).toString();
const NOTHING = "0";

let world: World | undefined;
afterEach(async () => {
  await world?.stop();
  world = undefined;
});

const character = (value: string, focused?: boolean) => [{ name: "character", type: 3, value, ...(focused ? { focused } : {}) }];

describe("/persona", () => {
  it("registers with autocomplete and Manage Channels, and suggests from the cast", async () => {
    const discord = await FakeDiscord.start();
    world = await startWorld({ discord, env: { DISCORD_GUILD_ID: discord.guildId } });
    const put = await discord.waitForRest((c) => c.method === "PUT" && c.path.includes("/commands"));
    const persona = put.body.find((c: { name: string }) => c.name === "persona");
    expect(persona.default_member_permissions).toBe(MANAGE_CHANNELS);
    expect(persona.options).toEqual([expect.objectContaining({ name: "character", type: 3, required: false, autocomplete: true })]);

    const user = discord.user({ name: "member" });
    const ask = async (typed: string) => {
      const i = discord.sendInteraction({ channelId: discord.channelIds[0]!, user, name: "persona", options: character(typed, true), autocomplete: true, permissions: NOTHING });
      const callback = await discord.waitForRest((c) => c.method === "POST" && c.path.includes(`/${i.token}/callback`));
      expect(callback.status).toBe(204);
      expect(callback.body.type).toBe(8);
      return callback.body.data.choices.map((c: { value: string }) => c.value);
    };
    expect(await ask("")).toEqual(["Friend", "Ross", "Rachel", "Monica", "Chandler", "Joey", "Phoebe"]);
    expect(await ask("ro")).toEqual(["Ross"]);
    expect(await ask("tribb")).toEqual(["Joey"]);
  });

  it("shows the persona, refuses members without Manage Channels, sets it for those with it, and the next prompt speaks as the character", async () => {
    world = await startWorld();
    const { discord, openai } = world;
    const [channel, other] = discord.channelIds as [string, string];
    const member = discord.user({ name: "member" });
    const mod = discord.user({ name: "mod" });
    const alice = discord.user({ name: "alice", globalName: "Alice" });

    const show = discord.sendInteraction({ channelId: channel, user: member, name: "persona", permissions: NOTHING });
    expect((await interactionReply(discord, show.token)).content).toMatch(/^\*\*Friend\*\* answers in this channel\./);

    const refused = discord.sendInteraction({ channelId: channel, user: member, name: "persona", options: character("Joey"), permissions: NOTHING });
    expect((await interactionReply(discord, refused.token)).content).toMatch(/Manage Channels/);
    expect(world.friend.store.getPersona(channel)).toBeUndefined();

    const unknown = discord.sendInteraction({ channelId: channel, user: mod, name: "persona", options: character("Gunther"), permissions: MANAGE_CHANNELS });
    expect((await interactionReply(discord, unknown.token)).content).toMatch(/no "Gunther" in the cast.*Joey/);

    const set = discord.sendInteraction({ channelId: channel, user: mod, name: "persona", options: character("joey tribbiani"), permissions: MANAGE_CHANNELS });
    expect((await interactionReply(discord, set.token)).content).toMatch(/\*\*Joey\*\* answers in this channel/);
    expect(world.friend.store.getPersona(channel)).toBe("Joey");
    expect(world.friend.store.getPersona(other)).toBeUndefined();

    const status = discord.sendInteraction({ channelId: channel, user: member, name: "status" });
    const embed = (await interactionReply(discord, status.token)).embeds![0] as { fields: { name: string; value: string }[] };
    expect(embed.fields.find((f) => f.name === "Persona here")?.value).toBe("Joey");

    openai.otherwise(() => ({ text: "Joey: How you doin'?\nFriend: hi" }));
    discord.sendMessage({ channelId: channel, author: alice, content: `<@${discord.botUser.id}> hey`, mentions: [discord.botUser as never] });
    await eventually(() => openai.requests.length === 1, "the request");
    const [system] = openai.requests[0]!.body.messages;
    expect(system!.content).toContain("Your name is Joey.");
    expect(openai.requests[0]!.body.stop).not.toContain("\nJoey:");
    await eventually(() => world!.logs.lines.some((l) => l.msg === "answered" && l.persona === "Joey"), "Joey's answer");
  });

  it("lets anyone choose in a DM", async () => {
    world = await startWorld();
    const { discord } = world;
    const user = discord.user({ name: "dm-user" });
    const i = discord.sendInteraction({ channelId: "", user, name: "persona", options: character("Phoebe"), dm: true });
    expect((await interactionReply(discord, i.token)).content).toMatch(/\*\*Phoebe\*\* answers/);
    expect(world.friend.store.getPersona(discord.dmChannelId(user))).toBe("Phoebe");
  });
});
