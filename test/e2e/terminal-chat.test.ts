import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FakeModelServer } from "../fakes/model-server.ts";
import { FakeOpenAI } from "../fakes/openai-chat.ts";
import { eventually, useCleanup, useTinyModels } from "./harness.ts";
import { CHAT_STARTUP_MS, openaiChatEnv, startChat, type Chat } from "./chat-process.ts";

const tiny = useTinyModels();

const cleanup = useCleanup();

/** `friend chat` as a user runs it, with piped stdin and only the given environment. */
const chat = (args: string[], env: Record<string, string>, cwd?: string): Chat => startChat(args, env, cleanup, cwd);

const setup = () => openaiChatEnv(cleanup, tiny.env(), "jill");

const STARTUP = CHAT_STARTUP_MS;

describe("friend chat", () => {
  it("streams a cleaned reply through the same engine, with no Discord variables, and keeps the conversation across runs", async () => {
    const { openai, env } = await setup();
    openai.script({ text: "Friend: Oh, I don't know, what are you up for?\nRoss: (entering) Hey Ben!\nMonica: Hi!" });
    const first = chat([], env);
    first.say("what should we do tonight?");
    first.end();
    expect(await first.exited).toBe(0);
    expect(first.stdout()).toContain("Friend: Oh, I don't know, what are you up for?\n");
    expect(first.stdout()).not.toContain("Ross");
    const request = openai.requests[0]!.body;
    expect(request.messages.at(-1)).toEqual({ role: "user", name: "jill", content: "what should we do tonight?" });
    expect(request.stop).toContain("\njill:");

    openai.script({ text: "Still here." });
    const second = chat([], env);
    second.say("remember me?");
    second.end();
    expect(await second.exited).toBe(0);
    expect(openai.requests[1]!.body.messages.slice(1).map((m) => m.content)).toEqual(["what should we do tonight?", "Oh, I don't know, what are you up for?", "remember me?"]);
    expect(first.stderr()).toBe("");
  }, STARTUP * 2);

  it("--persona and /persona choose who answers: the label, the prompt and the status show it, and it is kept for the channel", async () => {
    const { openai, env } = await setup();
    openai.script({ text: "Joey: How you doin'?\nFriend: hi" }, { text: "Rachel Green: Noooo." });
    const c = chat(["--persona", "joey"], env);
    c.say("hey");
    c.say("/persona rachel");
    c.say("/status");
    c.say("you there?");
    c.say("/persona Gunther");
    c.end();
    expect(await c.exited).toBe(0);
    const out = c.stdout();
    expect(out).toContain("(talking to Joey on openai");
    expect(out).toContain("Joey: How you doin'?\n");
    expect(out).toContain("(Rachel answers from your next message)");
    expect(out).toMatch(/\(openai \(ft:test\); local model not loaded; window 2 turns, \d+ tokens; persona Rachel\)/);
    expect(out).toContain("Rachel: Noooo.\n");
    expect(out).toContain(`(there's no "Gunther" in the cast`);
    expect(openai.requests[0]!.body.messages[0]!.content).toContain("Your name is Joey.");
    expect(openai.requests[1]!.body.messages.slice(1, 3)).toEqual([
      { role: "user", name: "jill", content: "hey" },
      { role: "assistant", name: "Joey", content: "How you doin'?" },
    ]);
    const again = chat([], env);
    again.end();
    expect(await again.exited).toBe(0);
    expect(again.stdout()).toContain("(talking to Rachel on openai");
    const wrong = chat(["--persona", "Gunther"], env);
    expect(await wrong.exited).toBe(1);
    expect(wrong.stderr()).toMatch(/--persona: "Gunther" is not in the cast \(Friend, Ross/);
  }, STARTUP);

  it("--raw shows the model's raw output and the cut follow-on speaker; /raw turns it off", async () => {
    const { openai, env } = await setup();
    openai.script({ text: "Friend: Sure thing.\nRoss: (entering) Hey Ben!" }, { text: "Okay.\nRoss: bye" });
    const c = chat(["--raw"], env);
    c.say("hi");
    c.say("/raw");
    c.say("again");
    c.end();
    expect(await c.exited).toBe(0);
    const out = c.stdout();
    expect(out).toContain("Friend: Sure thing.\n");
    // Raw output as far as it was read: the generation ends as soon as the cleaner is sure of the cut.
    expect(out).toContain(`┆ raw: ${JSON.stringify("Friend: Sure thing.\nRoss: ")}`);
    expect(out).toContain(`┆ cut: ${JSON.stringify("Friend: ")} … ${JSON.stringify("\nRoss: ")}`);
    expect(out).toContain("(raw output off)");
    expect(out).toContain("Friend: Okay.\n");
    expect(out.match(/┆ raw:/g)).toHaveLength(1);
  }, STARTUP);

  it("/reset forgets the conversation; /model local switches to the local model; /status says so", async () => {
    const { openai, env } = await setup();
    openai.otherwise((r) => ({ text: `re ${r.body.messages.at(-1)!.content}` }));
    const c = chat([], env);
    c.say("one");
    c.say("/reset");
    c.say("two");
    c.say("/model local");
    c.say("hi local");
    c.say("/status");
    c.end();
    expect(await c.exited).toBe(0);
    const out = c.stdout();
    expect(out).toContain("(forgot 2 turns; fresh start)");
    expect(openai.requests.map((r) => r.body.messages.slice(1).map((m) => m.content))).toEqual([["one"], ["two"]]);
    expect(out).toContain("(switched to local (tiny-script.gguf))");
    expect(out).toContain("Friend: Oh, I don't know.\n");
    expect(out).toMatch(/\(local \(tiny-script\.gguf\); local model loaded; window 4 turns, \d+ tokens; persona Friend\)/);
  }, STARTUP);

  it("Ctrl-C mid-reply stops that reply where it stands and the chat goes on; Ctrl-C at the prompt leaves with 0", async () => {
    const { openai, env } = await setup();
    openai.script({ text: "Well, this is a very long answer that goes on and on and on and on.", chunkDelayMs: 300 });
    openai.otherwise(() => ({ text: "Next answer." }));
    const c = chat([], env);
    c.say("tell me a story");
    await eventually(() => c.stdout().includes("Friend: Well,"), "the reply to begin", 30_000);
    c.child.kill("SIGINT");
    c.say("and then?");
    await eventually(() => c.stdout().includes("Friend: Next answer."), "the next reply", 30_000);
    expect(c.stdout()).not.toContain("on and on.");
    // What stood when it was stopped is Friend's turn; the unseen rest is not.
    const remembered = openai.requests[1]!.body.messages.slice(1);
    expect(remembered[1]!.role).toBe("assistant");
    expect(remembered[1]!.content).toMatch(/^Well,/);
    expect(remembered[1]!.content).not.toContain("on and on.");
    c.child.kill("SIGINT");
    expect(await c.exited).toBe(0);
  }, STARTUP);

  it("--backend local with LLAMA_MODEL_PATH a URL: downloads the model once into models/, then answers, cleaned", async () => {
    const server = await FakeModelServer.start();
    cleanup.push(() => server.stop());
    server.file("/files/tiny-script.gguf", readFileSync(tiny.models().model));
    const home = mkdtempSync(join(tmpdir(), "friend-clone-")); // where a user runs it: no .env, no models/
    const env = { FRIEND_DB_PATH: join(home, "data", "friend.db"), LLAMA_MODEL_PATH: `${server.url}/files/tiny-script.gguf`, LLAMA_LORA_PATH: "", LLAMA_THREADS: "1", LLAMA_CONTEXT_SIZE: "512" };
    const c = chat(["--backend", "local"], env, home);
    c.say("hi");
    c.end();
    expect(await c.exited).toBe(0);
    expect(c.stdout()).toContain("Friend: Oh, I don't know.\n");
    expect(existsSync(join(home, "models", "tiny-script.gguf"))).toBe(true);
    const fetched = server.requests.length;
    const again = chat(["--backend", "local"], env, home);
    again.say("hi again");
    again.end();
    expect(await again.exited).toBe(0);
    expect(again.stdout()).toContain("Friend: Oh, I don't know.\n");
    expect(server.requests).toHaveLength(fetched); // present: used without the network
  }, STARTUP * 2);

  it("needs only the chosen backend's variables, and says clearly what is missing", async () => {
    const { env } = await setup();
    const c = chat(["--backend", "openai"], { ...env, OPENAI_MODEL: "" });
    c.end();
    expect(await c.exited).toBe(1);
    expect(c.stderr()).toContain("OPENAI_MODEL: is required when FRIEND_BACKEND=openai");
    expect(c.stderr()).not.toContain("DISCORD_TOKEN");
    expect(c.stderr()).not.toMatch(/\n\s+at /);
  }, STARTUP);
});
