import { afterEach, describe, expect, it } from "vitest";
import { eventually, OPENAI_KEY, startWorld, type World } from "./harness.ts";

let world: World | undefined;
afterEach(async () => {
  await world?.stop();
  world = undefined;
});

describe("Friend in a Discord server", () => {
  it("answers a mention in character, cleaned, as a reply that pings nobody", async () => {
    world = await startWorld();
    const { discord, openai } = world;
    openai.script({ text: "Friend: Oh, I don't know, what are you up for?\n\nRoss: (entering) Hey Ben!\n\nMonica: Hi!" });
    const alice = discord.user({ name: "alice", globalName: "Alice" });
    const channel = discord.channelIds[0]!;
    const asked = discord.sendMessage({ channelId: channel, author: alice, content: `<@${discord.botUser.id}> what should we do tonight?`, mentions: [discord.botUser as never] });

    const post = await discord.waitForRest((c) => c.method === "POST" && c.path === `/channels/${channel}/messages`);
    expect(post.body.message_reference.message_id).toBe(asked.id);
    expect(post.body.allowed_mentions).toEqual({ parse: [], users: [], roles: [], replied_user: false });
    await eventually(() => discord.botMessages(channel)[0]?.content === "Oh, I don't know, what are you up for?", "the cleaned reply");

    const request = openai.requests[0]!.body;
    expect(request.model).toBe("ft:gpt-3.5-turbo-0125:friends::test");
    expect(request.messages.at(-1)).toEqual({ role: "user", name: "Alice", content: "what should we do tonight?" });
    expect(request.messages[0]!.content).toContain("close friend Alice");
    expect(request.stop!.length).toBeLessThanOrEqual(4);
    expect(request.stop).toContain("\nAlice:");
    expect(openai.requests[0]!.headers.authorization).toBe(`Bearer ${OPENAI_KEY}`);
    expect(discord.rest.some((c) => c.path === `/channels/${channel}/typing`)).toBe(true);
  });

  it("never lets model output ping @everyone or anyone else", async () => {
    world = await startWorld({ env: { FRIEND_CHANNELS: "" } });
    const { discord, openai } = world;
    const bob = discord.user({ name: "bob" });
    openai.script({ text: "@everyone @here <@&123456789012345678> <@" + bob.id + "> party at Monica's!" });
    const channel = discord.channelIds[0]!;
    discord.sendMessage({ channelId: channel, author: bob, content: `<@${discord.botUser.id}> ping them`, mentions: [discord.botUser as never] });
    await eventually(() => discord.botMessages(channel)[0]?.content.includes("party"), "the reply");
    for (const call of discord.rest.filter((c) => c.path.startsWith(`/channels/${channel}/messages`) && c.method !== "GET")) {
      expect(call.body.allowed_mentions).toEqual({ parse: [], users: [], roles: [], replied_user: false });
    }
  });
});
