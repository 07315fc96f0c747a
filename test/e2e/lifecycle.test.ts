import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, statSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FakeDiscord } from "../fakes/discord.ts";
import { FakeOpenAI } from "../fakes/openai-chat.ts";
import { eventually, useCleanup } from "./harness.ts";
import { spawnFriend, type FriendProcess } from "./process.ts";

const cleanup = useCleanup();

async function fakes() {
  const discord = await FakeDiscord.start();
  const openai = await FakeOpenAI.start();
  cleanup.push(() => discord.stop(), () => openai.stop());
  const env = {
    DISCORD_TOKEN: discord.token,
    DISCORD_API_URL: discord.apiUrl,
    OPENAI_API_KEY: "sk-process-test-0000",
    OPENAI_BASE_URL: openai.baseURL,
    OPENAI_MODEL: "ft:test",
    FRIEND_DB_PATH: ":memory:",
  };
  return { discord, openai, env };
}

function track(friend: FriendProcess): FriendProcess {
  cleanup.push(async () => {
    if (friend.child.exitCode === null && friend.child.signalCode === null) friend.child.kill("SIGKILL");
    await friend.exited;
  });
  return friend;
}

describe("the Friend process", () => {
  it("refuses bad configuration with one clear message and no stack trace", async () => {
    const friend = track(spawnFriend({ FRIEND_BACKEND: "gpt5", LLAMA_THREADS: "lots", OPENAI_API_KEY: "sk-never-print-me-123" }));
    expect(await friend.exited).toBe(1);
    const out = friend.output();
    expect(out).toContain("Friend cannot start, the configuration is wrong:");
    expect(out).toContain("DISCORD_TOKEN: is required");
    expect(out).toContain("FRIEND_BACKEND: must be one of openai, local");
    expect(out).toContain("LLAMA_THREADS: must be a number");
    expect(out).not.toMatch(/\n\s+at /);
    expect(out).not.toContain("sk-never-print-me-123");
  }, 60_000);

  it.each(["SIGTERM", "SIGINT"] as const)("exits 0 on %s in the middle of a reply, after a clean stop", async (signal) => {
    const { discord, openai, env } = await fakes();
    openai.otherwise(() => ({ text: "a slow answer that never quite finishes", chunkDelayMs: 400 }));
    const friend = track(spawnFriend(env));
    await eventually(() => discord.identifies > 0 && friend.output().includes("connected to Discord"), "Friend to connect", 50_000);
    discord.sendMessage({ channelId: discord.channelIds[0]!, author: discord.user({ name: "ross" }), content: `<@${discord.botUser.id}> hi`, mentions: [discord.botUser as never] });
    await eventually(() => openai.requests.length > 0, "the reply to start");
    friend.child.kill(signal);
    expect(await friend.exited).toBe(0);
    // "bye" is logged only after a clean stop, not when the shutdown deadline forces the exit.
    expect(friend.output()).toContain('"msg":"bye"');
    expect(friend.output()).not.toContain(discord.token);
  }, 60_000); // a process start compiles the TypeScript sources: slow on a busy 2-core machine
});

/** One clear line naming what to fix: no JSON log line, no stack trace, no secret. */
function expectOneLine(out: string, start: string, secrets: string[] = []) {
  const lines = out.trim().split("\n").filter((l) => !l.startsWith("{"));
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(new RegExp(`^Friend cannot start: ${start}`));
  expect(out).not.toMatch(/\n\s+at /);
  expect(out).not.toContain('"level":60');
  for (const secret of secrets) expect(out).not.toContain(secret);
}

describe("start-up failures after the configuration is valid", () => {
  it("a port already in use names FRIEND_HTTP_PORT", async () => {
    const { env } = await fakes();
    const busy: Server = createServer();
    await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
    cleanup.push(() => new Promise<void>((resolve) => busy.close(() => resolve())));
    const port = (busy.address() as { port: number }).port;
    const friend = track(spawnFriend({ ...env, FRIEND_HTTP_PORT: String(port) }));
    expect(await friend.exited).toBe(1);
    expectOneLine(friend.output(), `FRIEND_HTTP_PORT=${port}: the port is already in use`, [env.DISCORD_TOKEN]);
  }, 60_000);

  it("an address not on this machine names FRIEND_HTTP_HOST", async () => {
    const { env } = await fakes();
    const friend = track(spawnFriend({ ...env, FRIEND_HTTP_PORT: "0", FRIEND_HTTP_HOST: "192.0.2.1" })); // TEST-NET-1: never local
    expect(await friend.exited).toBe(1);
    expectOneLine(friend.output(), "FRIEND_HTTP_HOST=192.0.2.1: cannot listen on this address", [env.DISCORD_TOKEN]);
  }, 60_000);

  it("a token Discord refuses names DISCORD_TOKEN, and never prints it", async () => {
    const { env } = await fakes();
    const wrong = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.wrong-token-wrong-token-wrong-token-xx";
    const friend = track(spawnFriend({ ...env, DISCORD_TOKEN: wrong }));
    expect(await friend.exited).toBe(1);
    expectOneLine(friend.output(), "DISCORD_TOKEN: Discord refused the token", [wrong]);
  }, 60_000);

  it("an API address nobody answers names DISCORD_API_URL", async () => {
    const { env } = await fakes();
    const closed: Server = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as { port: number }).port;
    await new Promise<void>((resolve) => closed.close(() => resolve())); // nothing listens there now
    const friend = track(spawnFriend({ ...env, DISCORD_API_URL: `http://127.0.0.1:${port}/api` }));
    expect(await friend.exited).toBe(1);
    expectOneLine(friend.output(), `DISCORD_API_URL=http://127.0.0.1:${port}/api: cannot reach Discord \\(ECONNREFUSED\\)`, [env.DISCORD_TOKEN]);
  }, 60_000);
});

describe("a database Friend cannot write is not called corrupt", () => {
  /**
   * Makes paths unwritable even for root (permissions bind root nobody): the immutable attribute as
   * root, file modes otherwise. The undo runs after the test.
   */
  function lockDown(...paths: string[]): void {
    if (process.getuid?.() === 0) {
      execFileSync("chattr", ["+i", ...paths]);
      cleanup.push(async () => void execFileSync("chattr", ["-i", ...paths]));
      return;
    }
    for (const path of paths) chmodSync(path, statSync(path).isDirectory() ? 0o555 : 0o444);
    cleanup.push(async () => {
      for (const path of paths) chmodSync(path, statSync(path).isDirectory() ? 0o755 : 0o644);
    });
  }

  it("a good database that cannot be written: says so, and does not offer --move-corrupt-db", async () => {
    const { env } = await fakes();
    const state = mkdtempSync(join(tmpdir(), "friend-ro-"));
    const path = join(state, "friend.db");
    const { SqliteStore } = await import("../../src/store/sqlite.ts");
    new SqliteStore({ path }).close(); // a real, healthy Friend database
    lockDown(path, state);
    const friend = track(spawnFriend({ ...env, FRIEND_DB_PATH: path }));
    expect(await friend.exited).toBe(1);
    expectOneLine(friend.output(), `FRIEND_DB_PATH=${path} cannot be written`);
    expect(friend.output()).toContain("writable");
    expect(friend.output()).not.toContain("--move-corrupt-db");
  }, 60_000);

  it("--move-corrupt-db on a corrupt file it cannot move says why in one line", async () => {
    const { env } = await fakes();
    const state = mkdtempSync(join(tmpdir(), "friend-ro-"));
    const path = join(state, "friend.db");
    writeFileSync(path, "not sqlite at all ".repeat(100));
    lockDown(path, state);
    const friend = track(spawnFriend({ ...env, FRIEND_DB_PATH: path }, { args: ["--move-corrupt-db"] }));
    expect(await friend.exited).toBe(1);
    expectOneLine(friend.output(), `FRIEND_DB_PATH=${path} is not a readable Friend database, and it could not be moved aside`);
  }, 60_000);
});
