import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FakeOpenAI } from "../fakes/openai-chat.ts";
import { ROOT } from "./process.ts";

export interface Chat {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  say(line: string): void;
  /** Ctrl-D: the end of input. */
  end(): void;
  exited: Promise<number | string>;
}

/**
 * `friend chat` as a user runs it, with piped stdin and only the given environment (plus PATH).
 * `cleanup` gets a step that kills the process if the test left it running.
 */
export function startChat(args: string[], env: Record<string, string>, cleanup: (() => Promise<void>)[], cwd = ROOT): Chat {
  const child = spawn(process.execPath, [join(ROOT, "bin/friend.js"), "chat", ...args], { cwd, env: { PATH: process.env.PATH ?? "", ...env }, stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  const exited = once(child, "exit").then(([code, signal]) => (code ?? signal) as number | string);
  cleanup.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
  });
  return { child, stdout: () => stdout, stderr: () => stderr, say: (line) => child.stdin!.write(`${line}\n`), end: () => child.stdin!.end(), exited };
}

/** Each process compiles the TypeScript sources as it starts. */
export const CHAT_STARTUP_MS = 60_000;

/** A fake OpenAI and the environment of a chat that talks to it, with its own database; `local` is the tiny models' env. */
export async function openaiChatEnv(cleanup: (() => Promise<void>)[], local: Record<string, string>, user: string): Promise<{ openai: FakeOpenAI; env: Record<string, string> }> {
  const openai = await FakeOpenAI.start();
  cleanup.push(() => openai.stop());
  const env = {
    OPENAI_API_KEY: "sk-chat-test-1234",
    OPENAI_BASE_URL: openai.baseURL,
    OPENAI_MODEL: "ft:test",
    FRIEND_DB_PATH: join(mkdtempSync(join(tmpdir(), "friend-chat-")), "friend.db"),
    USER: user,
    ...local,
  };
  return { openai, env };
}
