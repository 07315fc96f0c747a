import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));

export interface FriendProcess {
  child: ChildProcess;
  output: () => string;
  /** Resolves with the exit code (or signal name) once the process has ended. */
  exited: Promise<number | string>;
}

/** Runs Friend exactly as `npm start` does (plus `args`), with only the given environment (plus PATH). */
export function spawnFriend(env: Record<string, string>, options: { args?: string[] } = {}): FriendProcess {
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts", ...(options.args ?? [])], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  const exited = once(child, "exit").then(([code, signal]) => (code ?? signal) as number | string);
  return { child, output: () => output, exited };
}
