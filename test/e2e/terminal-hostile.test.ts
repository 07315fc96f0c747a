/**
 * `friend chat` on a bad day, as real processes: model URLs that can never work, two chats on one
 * channel, a model that prints terminal control sequences, and a storm of Ctrl-C.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FakeModelServer } from "../fakes/model-server.ts";
import { FakeOpenAI } from "../fakes/openai-chat.ts";
import { CHAT_STARTUP_MS, openaiChatEnv, startChat, type Chat } from "./chat-process.ts";
import { eventually, useCleanup, useTinyModels } from "./harness.ts";

const tiny = useTinyModels();

const cleanup = useCleanup();

const chat = (args: string[], env: Record<string, string>, cwd?: string): Chat => startChat(args, env, cleanup, cwd);

/** Anything a terminal acts on: ESC, other C0 controls but tab and newline, DEL and C1. */
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/;
const ERROR_LINE = "Could I BE any more broken";

const openaiEnv = () => openaiChatEnv(cleanup, tiny.env(), "rachel");

describe("friend chat with a local model whose URL can never work", () => {
  it("says why for each failure instead of the error line, and leaves as soon as its input ends", async () => {
    const models = await FakeModelServer.start();
    cleanup.push(() => models.stop());
    const model = readFileSync(tiny.models().model);
    models
      .misbehave("/loop/a.gguf", { kind: "redirect", to: "/loop/b.gguf" })
      .misbehave("/loop/b.gguf", { kind: "redirect", to: "/loop/a.gguf" })
      .misbehave("/page/model.gguf", { kind: "html" })
      .file("/lie/model.gguf", model)
      .misbehave("/lie/model.gguf", { kind: "lying-length", extraBytes: 100_000 })
      .file("/cut/model.gguf", model)
      .misbehave("/cut/model.gguf", { kind: "truncate", atByte: 100_000 })
      .file("/stall/model.gguf", model)
      .misbehave("/stall/model.gguf", { kind: "stall", atByte: 100_000 })
      .file("/private/model.gguf", model)
      .requireBasic("reader", "TopSecretPassword", "/private/model.gguf");
    const url = (path: string, credentials = "") => `${models.url.replace("http://", `http://${credentials}`)}${path}`;
    const cases: [source: string, shown: string, reason: string | RegExp][] = [
      [url("/loop/a.gguf"), url("/loop/a.gguf"), `the server redirects in a loop (${url("/loop/a.gguf")} → ${url("/loop/b.gguf")} → ${url("/loop/a.gguf")})`],
      [url("/page/model.gguf"), url("/page/model.gguf"), "the server sent a web page (text/html), not a GGUF file; give the file's direct download link"],
      [url("/lie/model.gguf"), url("/lie/model.gguf"), /^the transfer broke off \d+ times? and never got past 280\.4 KB of the 380\.4 KB the server announced/],
      [url("/cut/model.gguf"), url("/cut/model.gguf"), /^the transfer broke off \d+ times? and never got past 100\.0 KB of the 280\.4 KB the server announced/],
      [url("/stall/model.gguf"), url("/stall/model.gguf"), "the transfer stopped at 100.0 KB of the 280.4 KB the server announced: nothing more arrived for 3 s; the next attempt resumes from what arrived"],
      [url("/private/model.gguf", "reader:WrongPassword@"), url("/private/model.gguf"), "the server answered 401 Unauthorized (the user name and password in the URL were refused)"],
    ];
    const runs = cases.map(([source]) => {
      const home = mkdtempSync(join(tmpdir(), "friend-chat-download-"));
      const c = chat([], { ...tiny.env({ LLAMA_MODEL_PATH: source }), FRIEND_BACKEND: "local", LLAMA_DOWNLOAD_STALL_S: "3", FRIEND_DB_PATH: join(home, "friend.db"), USER: "rachel" }, home);
      c.say("hi");
      c.end();
      return c;
    });
    const codes = await Promise.all(runs.map((c) => c.exited));
    for (const [i, [, shown, reason]] of cases.entries()) {
      const out = runs[i]!.stdout();
      const line = /\(can't answer on local: (.*)\)\n/.exec(out)?.[1];
      expect(line, out).toBeDefined();
      const prefix = `Cannot download the local model ${shown} into models/: `;
      expect(line!.startsWith(prefix), line).toBe(true);
      const said = line!.slice(prefix.length).replace(/; \/model openai switches$/, "");
      if (typeof reason === "string") expect(said).toBe(reason);
      else expect(said).toMatch(reason);
      expect(out).not.toContain(ERROR_LINE);
      // No unhandled rejection, no stack, no secret: a crash would print to stderr and exit 1.
      expect(runs[i]!.stderr()).toBe("");
      expect(out).not.toMatch(/WrongPassword|TopSecretPassword/);
      expect(codes[i]).toBe(0);
    }
  }, CHAT_STARTUP_MS * 3); // six processes start at once

  it("credentials in the URL are used (HTTP Basic) and never shown", async () => {
    const models = await FakeModelServer.start();
    cleanup.push(() => models.stop());
    models.file("/private/tiny-script.gguf", readFileSync(tiny.models().model)).requireBasic("reader", "TopSecretPassword");
    const home = mkdtempSync(join(tmpdir(), "friend-chat-download-"));
    const source = `${models.url.replace("http://", "http://reader:TopSecretPassword@")}/private/tiny-script.gguf`;
    const c = chat(["--backend", "local"], { ...tiny.env({ LLAMA_MODEL_PATH: source }), FRIEND_DB_PATH: join(home, "friend.db"), USER: "rachel", LOG_LEVEL: "info" }, home);
    c.say("hi");
    c.end();
    expect(await c.exited).toBe(0);
    expect(c.stdout()).toContain("Friend: Oh, I don't know.\n");
    expect(c.stdout() + c.stderr()).not.toContain("TopSecretPassword");
    expect(c.stderr()).toContain("downloaded"); // the log (LOG_LEVEL on stderr) saw the download, without the password
  }, CHAT_STARTUP_MS);
});

describe("friend chat against hostile conditions", () => {
  it("two chats on one channel: every line of each is answered", async () => {
    const { openai, env } = await openaiEnv();
    openai.otherwise((r) => ({ text: `re ${r.body.messages.at(-1)!.content}` }));
    const lines = (who: string) => Array.from({ length: 10 }, (_, i) => `${who} line ${i + 1}`);
    const chats = ["monica", "ross"].map((who) => {
      const c = chat(["--channel", "shared", "--name", who], env);
      for (const line of lines(who)) c.say(line);
      c.end();
      return { who, c };
    });
    for (const { who, c } of chats) {
      expect(await c.exited).toBe(0);
      const unanswered = lines(who).filter((line) => !c.stdout().includes(`Friend: re ${line}\n`));
      expect(unanswered).toEqual([]);
    }
    const asked = openai.requests.map((r) => r.body.messages.at(-1)!.content).sort();
    expect(asked).toEqual([...lines("monica"), ...lines("ross")].sort());
  }, CHAT_STARTUP_MS * 2);

  it("a chat opened on a channel another chat is still answering leaves that chat's waiting message alone; a dead chat's is dropped", async () => {
    const { openai, env } = await openaiEnv();
    openai.script({ hang: true }); // the first chat's reply never comes while the others start
    const first = chat(["--channel", "shared", "--name", "monica"], env);
    first.say("are you there?");
    await eventually(() => openai.requests.length === 1, "the first chat's request", CHAT_STARTUP_MS);
    const second = chat(["--channel", "shared", "--name", "ross"], env);
    second.end();
    expect(await second.exited).toBe(0);
    expect(second.stdout()).not.toContain("never got an answer");
    // Killed while its message waits: the next chat on the channel drops that message, and says so.
    first.child.kill("SIGKILL");
    await first.exited;
    openai.script({ text: "Yes." });
    const third = chat(["--channel", "shared", "--name", "monica"], env);
    third.say("still me");
    third.end();
    expect(await third.exited).toBe(0);
    expect(third.stdout()).toContain("(1 message from last time never got an answer)");
    expect(openai.requests.at(-1)!.body.messages.slice(1).map((m) => m.content)).toEqual(["still me"]);
  }, CHAT_STARTUP_MS * 3);

  it("a model's control sequences never reach the terminal, in the reply or the raw view", async () => {
    const { openai, env } = await openaiEnv();
    openai.script({ text: "Friend: \x1b]0;pwned\x07Hi\x1b[2J\x1b[H there\x1b]52;c;cm0gLXJmIH4=\x07, friend\x9b31m!\x1bc\nRoss: \x1b]52;c;eA==\x07" });
    const c = chat(["--raw"], { ...env, FORCE_COLOR: "" });
    c.say("hello");
    c.end();
    expect(await c.exited).toBe(0);
    const out = c.stdout();
    expect(out).toContain("Friend: Hi there, friend!\n");
    expect(out).not.toMatch(CONTROL);
    // The raw view shows what the model sent, escaped.
    expect(out).toContain(String.raw`┆ raw: "Friend: \u001b]0;pwned\u0007Hi\u001b[2J`);
    expect(out).toContain(String.raw`\u009b31m!`);
  }, CHAT_STARTUP_MS);

  it("a storm of Ctrl-C mid-reply (20 in 200 ms) stops the reply and leaves with exit code 0", async () => {
    const { openai, env } = await openaiEnv();
    openai.script({ text: "Well, this is a very long answer that goes on and on and on and on.", chunkDelayMs: 300 });
    const c = chat([], env);
    c.say("tell me a story");
    await eventually(() => c.stdout().includes("Friend: Well,"), "the reply to begin", 30_000);
    for (let i = 0; i < 20; i++) {
      c.child.kill("SIGINT");
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(await c.exited).toBe(0);
    expect(c.stdout()).not.toContain("on and on.");
    expect(c.stderr()).toBe("");
  }, CHAT_STARTUP_MS);
});
