// Friend as the load bench runs it: a real Friend process whose local backend answers instantly
// (and fails BENCH_FAIL_RATE of calls), so the figures are Friend's own overhead.
import pino from "pino";
import { startFriend } from "../src/app.ts";
import { BackendError, type Backend } from "../src/core/backend.ts";
import { loadConfig } from "../src/config/env.ts";

const failRate = Number(process.env.BENCH_FAIL_RATE ?? 0);
const instant: Backend = {
  name: "local",
  describe: () => ({ backend: "local", model: "instant", loaded: true }),
  async *generate(request) {
    if (Math.random() < failRate) throw new BackendError("server", "bench: scripted failure");
    yield `Friend: sure, ${request.turns.at(-1)!.author}!`;
    return { promptTokens: 1, completionTokens: 3 };
  },
  close: async () => {},
};

const config = loadConfig();
const friend = await startFriend(config, pino({ level: process.env.LOG_LEVEL ?? "warn" }), { makeLocal: () => instant });
console.log(JSON.stringify({ ready: true, opsUrl: friend.opsUrl }));
process.on("SIGTERM", () => void friend.stop().then(() => process.exit(0)));
// The bench asks for a full collection before it reads memory, so it compares what is retained.
process.on("SIGUSR2", () => (globalThis as { gc?: () => void }).gc?.());
