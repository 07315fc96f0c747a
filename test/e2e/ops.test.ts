import { afterEach, describe, expect, it } from "vitest";
import { FakeDiscord } from "../fakes/discord.ts";
import { eventually, handled, startWorld, type World } from "./harness.ts";

let world: World | undefined;
afterEach(async () => {
  await world?.stop();
  world = undefined;
});

const metricValue = (text: string, line: string) => Number(text.split("\n").find((l) => l.startsWith(line + " "))?.split(" ").pop());

describe("health and metrics", () => {
  it("serves /healthz and Prometheus /metrics on loopback when FRIEND_HTTP_PORT is set", async () => {
    world = await startWorld({ env: { FRIEND_HTTP_PORT: "0" } });
    const { discord, openai, friend } = world;
    expect(friend.opsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const health = await fetch(`${friend.opsUrl}/healthz`);
    expect(health.status).toBe(200);

    openai.script({ text: "Sure." }, { status: 400, body: { error: { message: "bad" } } });
    const channel = discord.channelIds[0]!;
    const alice = discord.user({ name: "alice" });
    discord.sendMessage({ channelId: channel, author: alice, content: `<@${discord.botUser.id}> one`, mentions: [discord.botUser as never] });
    await eventually(() => discord.botMessages(channel)[0]?.content === "Sure.", "the answer");
    discord.sendMessage({ channelId: channel, author: alice, content: `<@${discord.botUser.id}> two`, mentions: [discord.botUser as never] });
    await eventually(() => discord.botMessages(channel).length === 2, "the error line");

    const response = await fetch(`${friend.opsUrl}/metrics`);
    expect(response.headers.get("content-type")).toMatch(/^text\/plain/);
    const text = await response.text();
    expect(metricValue(text, 'friend_messages_seen_total{backend="openai"}')).toBe(2);
    expect(metricValue(text, 'friend_messages_answered_total{backend="openai"}')).toBe(1);
    expect(metricValue(text, 'friend_backend_errors_total{backend="openai",kind="bad_request"}')).toBe(1);
    expect(metricValue(text, 'friend_reply_latency_seconds_count{backend="openai"}')).toBe(1);
    expect(text).toContain("friend_queue_depth");
    expect(text).toContain("friend_local_tokens_per_second");
    // No local model was loaded: no channel states are saved.
    expect(metricValue(text, "friend_local_saved_states")).toBe(0);
    expect(metricValue(text, "friend_local_saved_state_bytes")).toBe(0);
    expect(text).toContain("friend_process_resident_memory_bytes");

    // The database going away makes Friend unhealthy.
    friend.store.close();
    expect((await fetch(`${friend.opsUrl}/healthz`)).status).toBe(503);
  });

  it("is off by default", async () => {
    world = await startWorld();
    expect(world.friend.opsUrl).toBeUndefined();
  });
});

describe("flood control", () => {
  it("answers a flooding user's first messages, says slow down once, then ignores them; others are unaffected", async () => {
    const discord = await FakeDiscord.start();
    const channel = discord.channelIds[0]!;
    world = await startWorld({ discord, env: { FRIEND_CHANNELS: channel, FRIEND_USER_MESSAGES_PER_MINUTE: "2", FRIEND_HTTP_PORT: "0" } });
    world.openai.otherwise((r) => ({ text: `re ${r.body.messages.at(-1)!.content}` }));
    const spammer = discord.user({ name: "spammer" });
    const calm = discord.user({ name: "calm" });
    for (let i = 0; i < 6; i++) discord.sendMessage({ channelId: channel, author: spammer, content: `spam ${i}` });
    await eventually(() => discord.botMessages(channel).some((m) => m.content === world!.config.settings.persona.slowDownReply), "the slow-down reply");
    discord.sendMessage({ channelId: channel, author: calm, content: "hello there" });
    await eventually(() => discord.botMessages(channel).some((m) => m.content === "re hello there"), "the calm user's answer");
    const contents = discord.botMessages(channel).map((m) => m.content);
    expect(contents.filter((c) => c === world!.config.settings.persona.slowDownReply)).toHaveLength(1);
    const prompts = world.openai.requests.flatMap((r) => r.body.messages.filter((m) => m.role === "user").map((m) => m.content));
    expect(prompts).not.toContain("spam 2");
    expect(prompts).not.toContain("spam 5");
    const metrics = await (await fetch(`${world.friend.opsUrl}/metrics`)).text();
    expect(metricValue(metrics, 'friend_messages_dropped_total{backend="openai",reason="flood"}')).toBe(4);
  });
});

describe("channel rules", () => {
  it("honours the allow list, the deny list and the DM switch", async () => {
    const discord = await FakeDiscord.start();
    const [allowed, elsewhere, denied] = discord.channelIds as [string, string, string];
    world = await startWorld({ discord, env: { FRIEND_ALLOW_CHANNELS: allowed, FRIEND_CHANNELS: denied, FRIEND_DENY_CHANNELS: denied, FRIEND_ALLOW_DMS: "false" } });
    world.openai.otherwise((r) => ({ text: `re ${r.body.messages.at(-1)!.content}` }));
    const alice = discord.user({ name: "alice" });
    const mention = (t: string) => ({ content: `<@${discord.botUser.id}> ${t}`, mentions: [discord.botUser as never] });
    const refused = [
      discord.sendMessage({ channelId: elsewhere, author: alice, ...mention("not allowed here") }),
      discord.sendMessage({ channelId: denied, author: alice, ...mention("denied beats everything") }),
      discord.sendMessage({ channelId: "", author: alice, content: "a DM", dm: true }),
    ];
    discord.sendMessage({ channelId: allowed, author: alice, ...mention("allowed") });
    await eventually(() => discord.botMessages(allowed)[0]?.content === "re allowed", "the allowed answer");
    for (const m of refused) expect(await handled(world!, m.id)).toMatchObject({ msg: "message ignored", reason: "not addressed" });
    expect(world.openai.requests.map((r) => r.body.messages.at(-1)!.content)).toEqual(["allowed"]);
  });
});

describe("gateway disruption", () => {
  it("answers messages Discord replays after a resume, exactly once", async () => {
    world = await startWorld();
    const { discord, openai } = world;
    openai.otherwise((r) => ({ text: `re ${r.body.messages.at(-1)!.content}` }));
    const channel = discord.channelIds[0]!;
    const alice = discord.user({ name: "alice" });
    const mention = (t: string) => ({ content: `<@${discord.botUser.id}> ${t}`, mentions: [discord.botUser as never] });
    discord.sendMessage({ channelId: channel, author: alice, ...mention("before") });
    await eventually(() => discord.botMessages(channel)[0]?.content === "re before", "the first answer");
    discord.dropConnection();
    const during = discord.sendMessage({ channelId: channel, author: alice, ...mention("during") });
    await eventually(() => discord.resumes > 0, "a resume");
    // Discord may deliver the same event twice around a reconnect.
    discord.sendMessage({ channelId: channel, author: alice, ...mention("during"), id: during.id });
    await eventually(() => discord.botMessages(channel).some((m) => m.content === "re during"), "the replayed message's answer");
    // Gateway events are handled in order: once a later marker is seen, the second delivery was too.
    const marker = discord.sendMessage({ channelId: channel, author: alice, content: "not for Friend" });
    await handled(world, marker.id);
    expect(discord.botMessages(channel).filter((m) => m.content === "re during")).toHaveLength(1);
    expect(openai.requests.filter((r) => r.body.messages.at(-1)!.content === "during")).toHaveLength(1);
  });
});
