import { afterEach, describe, expect, it } from "vitest";
import { eventually, startWorld, type World } from "./harness.ts";

let world: World | undefined;
afterEach(async () => {
  await world?.stop();
  world = undefined;
});

describe("streaming", () => {
  it("edits the reply as text arrives and never shows text the cleaner later cuts", async () => {
    world = await startWorld();
    const { discord, openai } = world;
    const channel = discord.channelIds[0]!;
    const pieces = ["Friend", ": Oh", ", I don't", " know", ", what are", " you up", " for?", "\n\n", "Ro", "ss", ": (enter", "ing) Hey", " Ben!", "\n\nMon", "ica: Hi!"];
    openai.script({ text: pieces.join(""), chunks: pieces, chunkDelayMs: 120 });
    discord.sendMessage({ channelId: channel, author: discord.user({ name: "ben" }), content: `<@${discord.botUser.id}> hey`, mentions: [discord.botUser as never] });
    const final = "Oh, I don't know, what are you up for?";
    await eventually(() => discord.botMessages(channel)[0]?.content === final, "the final reply");
    const [message] = discord.botMessages(channel);
    const shown = [message!.body.content, ...(message!.edits as { content: string }[]).map((e) => e.content)];
    expect(shown.length).toBeGreaterThan(1); // it really streamed
    for (const text of shown) {
      expect(final.startsWith(text), `showed ${JSON.stringify(text)}`).toBe(true);
      expect(text).not.toMatch(/Ross|Monica|Friend:/);
    }
  });

  it("posts once without streaming when streaming is off", async () => {
    world = await startWorld({ settings: (c) => void (c.settings.generation.stream = false) });
    const { discord, openai } = world;
    const channel = discord.channelIds[0]!;
    openai.script({ text: "Friend: Pivot!\nRoss: PIVOT!" });
    discord.sendMessage({ channelId: channel, author: discord.user({ name: "ben" }), content: `<@${discord.botUser.id}> couch`, mentions: [discord.botUser as never] });
    await eventually(() => discord.botMessages(channel)[0]?.content === "Pivot!", "the reply");
    expect(openai.requests[0]!.body.stream).toBeFalsy();
    expect(discord.botMessages(channel)[0]!.edits).toHaveLength(0);
  });
});

describe("concurrency", () => {
  it("runs channels concurrently but never more than the global limit", async () => {
    const { FakeDiscord } = await import("../fakes/discord.ts");
    const discord = await FakeDiscord.start();
    for (let i = 0; i < 2; i++) discord.addChannel();
    const channels = discord.channelIds.slice(0, 6);
    world = await startWorld({ discord, env: { FRIEND_CHANNELS: channels.join(",") }, settings: (c) => void (c.settings.limits.concurrency = 2) });
    world.openai.otherwise(() => ({ text: "one moment", delayMs: 800 }));
    const alice = discord.user({ name: "alice" });
    for (const channel of channels) discord.sendMessage({ channelId: channel, author: alice, content: "hi all" });
    await eventually(() => channels.every((c) => discord.botMessages(c).length === 1), "every channel answered", 15_000);
    expect(world.openai.maxInFlight).toBe(2);
  });
});
