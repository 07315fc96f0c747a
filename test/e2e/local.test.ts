import { afterEach, describe, expect, it } from "vitest";
import { eventually, startWorld, useTinyModels, type World } from "./harness.ts";
import { TEST_BUILD } from "../local/helpers.ts";

const tiny = useTinyModels();

let world: World | undefined;
afterEach(async () => {
  await world?.stop();
  world = undefined;
});

const local = (extra: Record<string, string> = {}) => tiny.env({ FRIEND_BACKEND: "local", LLAMA_LORA_PATH: tiny.models().adapter, ...extra });

describe("the local backend end to end", () => {
  it("loads the model and adapter at start and posts the designed hallucination cleaned to exactly its first line", async () => {
    world = await startWorld({ env: local() });
    const { discord } = world;
    await eventually(() => world!.logs.lines.some((l) => l.backend === "local" && /loaded/i.test(String(l.msg))), "the model to load at start", 20_000);
    // The start-up log says which llama.cpp binary runs (LLAMA_BUILD=native in the test's environment: the native build).
    const binary = world.logs.lines.find((l) => l.msg === "llama.cpp binary")?.binary;
    expect(binary).toMatch(TEST_BUILD === "native" ? /^native build/ : /^prebuilt/);
    const channel = discord.channelIds[0]!;
    discord.sendMessage({ channelId: channel, author: discord.user({ name: "ben", globalName: "Ben" }), content: `<@${discord.botUser.id}> what are you up for?`, mentions: [discord.botUser as never] });
    await eventually(() => discord.botMessages(channel)[0]?.content === "Oh, I don't know.", "the cleaned local reply", 20_000);
    const [message] = discord.botMessages(channel);
    for (const shown of [message!.body.content, ...(message!.edits as { content: string }[]).map((e) => e.content)]) expect(shown).not.toMatch(/Ross|Hey|Ben|Rachel/);
    expect(world.openai.requests).toHaveLength(0);
  });

  it("keeps running when the local model cannot load: a clear error line, and OpenAI channels unaffected", async () => {
    world = await startWorld({ env: local({ LLAMA_MODEL_PATH: tiny.models().missing }) });
    const { discord, openai, config, logs } = world;
    const [broken, fine] = discord.channelIds as [string, string];
    world.friend.store.setBackend(fine, "openai");
    openai.otherwise(() => ({ text: "OpenAI here." }));
    const ben = discord.user({ name: "ben" });
    discord.sendMessage({ channelId: broken, author: ben, content: `<@${discord.botUser.id}> hi`, mentions: [discord.botUser as never] });
    discord.sendMessage({ channelId: fine, author: ben, content: `<@${discord.botUser.id}> hi`, mentions: [discord.botUser as never] });
    // The reason reaches the channel (the same the log and /model give), not the generic error line.
    await eventually(() => discord.botMessages(broken)[0]?.content.startsWith("My model won't load right now ("), "the load failure line");
    expect(discord.botMessages(broken)[0]!.content).toContain("no-such-model.gguf");
    await eventually(() => discord.botMessages(fine)[0]?.content === "OpenAI here.", "the OpenAI answer");
    const failure = logs.lines.find((l) => l.msg === "backend failed; answering with the error line");
    expect(JSON.stringify(failure)).toContain("no-such-model.gguf");
  });
});
