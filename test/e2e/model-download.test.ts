/**
 * `/model local` with a model given by URL, through the fake Discord: the download's progress in
 * the reply and in /status, then the channel's designed reply; a failed download leaves OpenAI
 * channels working and the next /model tries again; a hostile GGUF header is refused at once.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { Config } from "../../src/config/env.ts";
import type { FakeDiscord, RestCall } from "../fakes/discord.ts";
import { FakeModelServer } from "../fakes/model-server.ts";
import { RawGguf } from "../gguf/raw-gguf.ts";
import { eventually, startWorld, useTinyModels, type World } from "./harness.ts";

const MANAGE_CHANNELS = (1n << 4n).toString();
const tiny = useTinyModels();

let world: World | undefined;
let server: FakeModelServer | undefined;
let root: string;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "friend-e2e-downloads-"));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));
afterEach(async () => {
  await world?.stop();
  await server?.stop();
  world = undefined;
  server = undefined;
});

let worldNumber = 0;
/** Downloads go into a fresh models/ and adapters/ per world. */
function downloadFolders(config: Config): void {
  const dir = join(root, `world-${worldNumber++}`);
  config.local.modelsDir = join(dir, "models");
  config.local.adaptersDir = join(dir, "adapters");
}

async function startServer(): Promise<FakeModelServer> {
  server = await FakeModelServer.start();
  server.file("/files/tiny-script.gguf", readFileSync(tiny.models().model)).file("/files/tiny-lora.gguf", readFileSync(tiny.models().adapter));
  return server;
}

const isEditOf = (token: string) => (c: RestCall) => c.method === "PATCH" && c.path.includes(`/webhooks/`) && c.path.includes(`/${token}/messages/@original`);

/** The reply's final text: the edit that says whether the switch happened. */
async function finalReply(discord: FakeDiscord, token: string, timeoutMs = 20_000): Promise<string> {
  const edit = await discord.waitForRest((c) => isEditOf(token)(c) && /^(Switched|Can't switch)/.test(c.body.content), timeoutMs);
  return edit.body.content as string;
}

function switchToLocal(discord: FakeDiscord, channelId: string): string {
  return discord.sendInteraction({ channelId, user: discord.user({ name: "mod" }), name: "model", options: [{ name: "backend", type: 3, value: "local" }], permissions: MANAGE_CHANNELS }).token;
}

async function statusField(discord: FakeDiscord, channelId: string, field: string): Promise<string | undefined> {
  const { token } = discord.sendInteraction({ channelId, user: discord.user({ name: "alice" }), name: "status" });
  const reply = await discord.waitForRest((c) => c.method === "POST" && c.path.startsWith("/interactions/") && c.path.includes(`/${token}/`));
  return (reply.body.data.embeds[0] as { fields: { name: string; value: string }[] }).fields.find((f) => f.name === field)?.value;
}

describe("/model local with a model by URL", () => {
  it("downloads, shows how far it got in the reply and in /status, then the channel answers with the designed reply", async () => {
    const models = await startServer();
    const held = models.interrupt("/files/tiny-script.gguf", 140_000, "hold");
    world = await startWorld({
      env: tiny.env({ LLAMA_MODEL_PATH: `${models.url}/files/tiny-script.gguf`, LLAMA_LORA_PATH: `${models.url}/files/tiny-lora.gguf` }),
      settings: downloadFolders,
    });
    const { discord } = world;
    const channel = discord.channelIds[0]!;
    const token = switchToLocal(discord, channel);
    await held.reached;

    const progress = await discord.waitForRest((c) => isEditOf(token)(c) && /^Getting \*\*local\*\* ready: downloading \d+% of tiny-script\.gguf \(.* of 280\.\d KB\)…$/.test(c.body.content), 20_000);
    expect(progress.body.content).not.toContain(models.url);
    expect(await statusField(discord, channel, "Local model loaded")).toMatch(/^downloading \d+% of tiny-script\.gguf/);
    expect(await statusField(discord, channel, "Local model")).toBe("tiny-script.gguf");

    held.release();
    expect(await finalReply(discord, token)).toBe("Switched this channel to **local** (`tiny-script.gguf` + `tiny-lora.gguf`).");
    // The switch is the last word: no progress edit lands after it.
    expect(discord.rest.filter(isEditOf(token)).at(-1)!.body.content).toMatch(/^Switched/);
    expect(await statusField(discord, channel, "Local model loaded")).toBe("yes");

    discord.sendMessage({ channelId: channel, author: discord.user({ name: "ben", globalName: "Ben" }), content: `<@${discord.botUser.id}> what are you up for?`, mentions: [discord.botUser as never] });
    await eventually(() => discord.botMessages(channel)[0]?.content === "Oh, I don't know.", "the local model's cleaned reply", 20_000);
    expect(world.openai.requests).toHaveLength(0);
    expect(world.logs.lines.some((l) => l.msg === "downloaded" && l.source === `${models.url}/files/tiny-script.gguf`)).toBe(true);
  });

  it("a download longer than an interaction lives: the reply says it carries on, and a later /model switches", async () => {
    const models = await startServer();
    const held = models.interrupt("/files/tiny-script.gguf", 140_000, "hold");
    world = await startWorld({
      env: tiny.env({ LLAMA_MODEL_PATH: `${models.url}/files/tiny-script.gguf` }),
      settings: (config) => {
        downloadFolders(config);
        config.discord.interactionWaitMs = 1500;
      },
    });
    const { discord } = world;
    const channel = discord.channelIds[0]!;
    const token = switchToLocal(discord, channel);
    await held.reached;
    const still = await discord.waitForRest((c) => isEditOf(token)(c) && /^Still getting/.test(c.body.content), 20_000);
    expect(still.body.content).toMatch(
      /^Still getting \*\*local\*\* ready \(downloading \d+% of tiny-script\.gguf \(.* of 280\.\d KB\)\); that carries on without this reply\. Run `\/model local` again when `\/status` shows it loaded\. This channel still uses \*\*openai\*\*\.$/,
    );
    expect(world.friend.store.getBackend(channel)).toBeUndefined();

    held.release();
    // The download finishes in the background, with nobody waiting on the reply.
    await eventually(() => world!.logs.lines.some((l) => l.msg === "local model loaded"), "the model to load in the background", 20_000);
    expect(await statusField(discord, channel, "Local model loaded")).toBe("yes");
    expect(await finalReply(discord, switchToLocal(discord, channel))).toBe("Switched this channel to **local** (`tiny-script.gguf`).");
  });

  it("a download that 404s: the reply names the URL and the reason, OpenAI channels keep answering, and the next /model tries again", async () => {
    const models = await startServer();
    const url = `${models.url}/files/later.gguf`;
    world = await startWorld({ env: tiny.env({ LLAMA_MODEL_PATH: url }), settings: downloadFolders });
    const { discord, openai, config } = world;
    const [channel, other] = discord.channelIds as [string, string];
    openai.otherwise(() => ({ text: "OpenAI here." }));

    const refused = await finalReply(discord, switchToLocal(discord, channel));
    expect(refused).toBe(`Can't switch to **local**: Cannot download the local model ${url} into ${config.local.modelsDir}/: the server answered 404 Not Found This channel still uses **openai**.`);
    expect(world.friend.store.getBackend(channel)).toBeUndefined();

    for (const id of [channel, other]) {
      discord.sendMessage({ channelId: id, author: discord.user({ name: "ben" }), content: `<@${discord.botUser.id}> hi`, mentions: [discord.botUser as never] });
      await eventually(() => discord.botMessages(id)[0]?.content === "OpenAI here.", `the OpenAI answer in ${id}`);
    }

    models.file("/files/later.gguf", readFileSync(tiny.models().model));
    expect(await finalReply(discord, switchToLocal(discord, channel))).toBe("Switched this channel to **local** (`later.gguf`).");
  });
});

describe("/model local with a model URL that can never work", () => {
  /** Rejections nobody handled while a test ran: each is a failure (node-llama-cpp's downloader can leave one). */
  const unhandled: unknown[] = [];
  const record = (reason: unknown): void => void unhandled.push(reason);
  beforeEach(() => void process.on("unhandledRejection", record));
  afterEach(() => {
    process.off("unhandledRejection", record);
    expect(unhandled.splice(0).map(String)).toEqual([]);
  });

  it.each<[string, (s: FakeModelServer) => string, (url: (path: string) => string) => string | RegExp]>([
    [
      "a redirect loop",
      (s) => (s.misbehave("/loop/a.gguf", { kind: "redirect", to: "/loop/b.gguf" }).misbehave("/loop/b.gguf", { kind: "redirect", to: "/loop/a.gguf" }), "/loop/a.gguf"),
      (url) => `the server redirects in a loop (${url("/loop/a.gguf")} → ${url("/loop/b.gguf")} → ${url("/loop/a.gguf")})`,
    ],
    ["a web page", (s) => (s.misbehave("/page/model.gguf", { kind: "html" }), "/page/model.gguf"), () => "the server sent a web page (text/html), not a GGUF file; give the file's direct download link"],
    [
      "a content-length that lies",
      (s) => (s.file("/lie/model.gguf", readFileSync(tiny.models().model)).misbehave("/lie/model.gguf", { kind: "lying-length", extraBytes: 100_000 }), "/lie/model.gguf"),
      () => /^the transfer broke off \d+ times? and never got past 280\.4 KB of the 380\.4 KB the server announced \(a truncated file on the server, or a content-length that is wrong\)$/,
    ],
    [
      "a truncated body",
      (s) => (s.file("/cut/model.gguf", readFileSync(tiny.models().model)).misbehave("/cut/model.gguf", { kind: "truncate", atByte: 100_000 }), "/cut/model.gguf"),
      () => /^the transfer broke off \d+ times? and never got past 100\.0 KB of the 280\.4 KB the server announced/,
    ],
    [
      "a stall",
      (s) => (s.file("/stall/model.gguf", readFileSync(tiny.models().model)).misbehave("/stall/model.gguf", { kind: "stall", atByte: 100_000 }), "/stall/model.gguf"),
      () => "the transfer stopped at 100.0 KB of the 280.4 KB the server announced: nothing more arrived for 2 s; the next attempt resumes from what arrived",
    ],
    [
      "credentials in the URL that the server refuses",
      (s) => (s.file("/private/model.gguf", readFileSync(tiny.models().model)).requireBasic("reader", "TopSecretPassword", "/private/model.gguf"), "/private/model.gguf"),
      () => "the server answered 401 Unauthorized (the user name and password in the URL were refused)",
    ],
  ])("%s: the reply gives the reason, in bounded time, and the channel keeps OpenAI", async (name, arrange, reason) => {
    const models = await startServer();
    const path = arrange(models);
    const url = (p: string) => `${models.url}${p}`;
    const source = name.startsWith("credentials") ? url(path).replace("http://", "http://reader:WrongPassword@") : url(path);
    world = await startWorld({ env: tiny.env({ LLAMA_MODEL_PATH: source, LLAMA_DOWNLOAD_STALL_S: "2" }), settings: downloadFolders });
    const { discord, config } = world;
    const channel = discord.channelIds[0]!;
    const reply = await finalReply(discord, switchToLocal(discord, channel), 25_000);
    const prefix = `Can't switch to **local**: Cannot download the local model ${url(path)} into ${config.local.modelsDir}/: `;
    const suffix = " This channel still uses **openai**.";
    expect(reply.startsWith(prefix), reply).toBe(true);
    expect(reply.endsWith(suffix), reply).toBe(true);
    const said = reply.slice(prefix.length, -suffix.length);
    const expected = reason(url);
    if (typeof expected === "string") expect(said).toBe(expected);
    else expect(said).toMatch(expected);
    expect(world.friend.store.getBackend(channel)).toBeUndefined();
    expect(world.logs.raw).not.toMatch(/WrongPassword|TopSecretPassword/);
    expect(JSON.stringify(discord.rest)).not.toMatch(/WrongPassword|TopSecretPassword/);
  });

  it("credentials in the URL are used (HTTP Basic): the switch succeeds, and they are never shown or logged", async () => {
    const models = await startServer();
    models.file("/private/tiny-script.gguf", readFileSync(tiny.models().model)).requireBasic("reader", "TopSecretPassword", "/private/tiny-script.gguf");
    const source = `${models.url.replace("http://", "http://reader:TopSecretPassword@")}/private/tiny-script.gguf`;
    world = await startWorld({ env: tiny.env({ LLAMA_MODEL_PATH: source }), settings: downloadFolders });
    const { discord } = world;
    expect(await finalReply(discord, switchToLocal(discord, discord.channelIds[0]!))).toBe("Switched this channel to **local** (`tiny-script.gguf`).");
    expect(world.logs.lines.some((l) => l.msg === "downloaded" && l.source === `${models.url}/private/tiny-script.gguf`)).toBe(true);
    expect(world.logs.raw).not.toContain("TopSecretPassword");
    expect(JSON.stringify(discord.rest)).not.toContain("TopSecretPassword");
  });
});

describe("/model local with a hostile GGUF header (issue 10)", () => {
  it("is refused at once with the file and the reason, and works once a valid file is put in place", async () => {
    const path = join(root, "hostile.gguf");
    writeFileSync(path, new RawGguf().header({ tensors: 2n ** 48n, keys: 2n ** 32n }).bytes());
    world = await startWorld({ env: tiny.env({ LLAMA_MODEL_PATH: path }) });
    const { discord } = world;
    const channel = discord.channelIds[0]!;
    const refused = await finalReply(discord, switchToLocal(discord, channel), 10_000);
    expect(refused).toMatch(new RegExp(`^Can't switch to \\*\\*local\\*\\*: The local model file ${path} is damaged or truncated: its header claims 281474976710656 tensors and 4294967296 metadata keys`));

    copyFileSync(tiny.models().model, path);
    expect(await finalReply(discord, switchToLocal(discord, channel))).toBe("Switched this channel to **local** (`hostile.gguf`).");
  });
});
