// Load, soak and disruption runs against the fake Discord and an instant backend (issue 6).
//   npm run bench -- load            1,000 messages, 100 channels, 50 users, as fast as possible
//   npm run bench -- soak [minutes]  ~5 messages/s (default 30 minutes); memory at the end vs after minute 1
//   npm run bench -- disruption [minutes]  socket dropped every 30 s, 10% backend failures
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { FakeDiscord, type FakeUser } from "../test/fakes/discord.ts";

const mode = process.argv[2] ?? "load";
const minutes = Number(process.argv[3] ?? (mode === "load" ? 0 : 30));

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

interface Scraped {
  rssMiB: number;
  heapMiB: number;
  seen: number;
  answered: number;
  coalesced: number;
  dropped: number;
  errors: number;
}

let friendProcess: ChildProcess | undefined;

async function scrape(opsUrl: string): Promise<Scraped> {
  friendProcess?.kill("SIGUSR2"); // full GC first: compare retained memory, not garbage
  await new Promise((r) => setTimeout(r, 200));
  const text = await (await fetch(`${opsUrl}/metrics`)).text();
  const value = (name: string) => text.split("\n").filter((l) => l.startsWith(name)).reduce((n, l) => n + Number(l.split(" ").pop()), 0);
  return {
    rssMiB: value("friend_process_resident_memory_bytes") / 2 ** 20,
    heapMiB: value("friend_nodejs_heap_size_used_bytes") / 2 ** 20,
    seen: value("friend_messages_seen_total"),
    answered: value("friend_messages_answered_total"),
    coalesced: value("friend_messages_coalesced_total"),
    dropped: value("friend_messages_dropped_total"),
    errors: value("friend_backend_errors_total"),
  };
}

async function main(): Promise<void> {
  const discord = await FakeDiscord.start({ echoBotMessages: false });
  while (discord.channelIds.length < 100) discord.addChannel();
  const channels = discord.channelIds.slice(0, 100);
  const users: FakeUser[] = Array.from({ length: 50 }, (_, i) => discord.user({ name: `user${i}` }));
  const child = spawn(process.execPath, ["--expose-gc", "--import", "tsx", "bench/friend-under-test.ts"], {
    env: {
      PATH: process.env.PATH,
      DISCORD_TOKEN: discord.token,
      DISCORD_API_URL: discord.apiUrl,
      FRIEND_BACKEND: "local",
      FRIEND_CHANNELS: channels.join(","),
      // A file, as deployed: an in-memory database would count Friend's durable state as process memory.
      FRIEND_DB_PATH: join(mkdtempSync(join(tmpdir(), "friend-bench-")), "friend.db"),
      FRIEND_HTTP_PORT: "0",
      FRIEND_USER_MESSAGES_PER_MINUTE: "100000",
      BENCH_FAIL_RATE: mode === "disruption" ? "0.1" : "0",
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  friendProcess = child;
  const lines = createInterface({ input: child.stdout! });
  const [first] = (await once(lines, "line")) as [string];
  const { opsUrl } = JSON.parse(first) as { opsUrl: string };
  const sentAt = new Map<string, number>();
  const send = (i: number) => {
    const message = discord.sendMessage({ channelId: channels[i % channels.length]!, author: users[i % users.length]!, content: `message ${i}` });
    sentAt.set(message.id, Date.now());
  };
  const latencies = () =>
    discord.rest
      .filter((c) => c.method === "POST" && c.path.endsWith("/messages") && c.status === 200 && c.body?.message_reference)
      .map((c) => c.at - (sentAt.get(c.body.message_reference.message_id) ?? NaN))
      .filter(Number.isFinite);

  if (mode === "load") {
    const total = 1000;
    const started = performance.now();
    for (let i = 0; i < total; i++) send(i);
    const answeredAll = () => channels.every((c) => discord.botMessages(c).length > 0);
    // Poll the fake only: scraping Friend's metrics in the loop would load the process being measured.
    while (!answeredAll()) {
      await new Promise((r) => setTimeout(r, 20));
      if (performance.now() - started > 120_000) throw new Error("not every channel was answered in 2 minutes");
    }
    await new Promise((r) => setTimeout(r, 500)); // let the last replies land
    const elapsed = (performance.now() - started) / 1000;
    const burst = latencies();
    const m = await scrape(opsUrl);
    // Overhead without a queue in front: one message at a time, each answered before the next.
    const sequential: number[] = [];
    for (let k = 0; k < 200; k++) {
      const message = discord.sendMessage({ channelId: channels[k % channels.length]!, author: users[k % users.length]!, content: `one at a time ${k}` });
      const t0 = Date.now();
      const reply = await discord.waitForRest((c) => c.method === "POST" && c.body?.message_reference?.message_id === message.id);
      sequential.push(reply.at - t0);
    }
    console.log(
      JSON.stringify(
        {
          mode,
          messages: total,
          channels: channels.length,
          users: users.length,
          seconds: +elapsed.toFixed(2),
          messagesPerSecond: Math.round(total / elapsed),
          replies: burst.length,
          coalesced: m.coalesced,
          dropped: m.dropped,
          everyChannelAnswered: answeredAll(),
          burstGatewayToReplyMs: { p50: +percentile(burst, 50).toFixed(1), p99: +percentile(burst, 99).toFixed(1) },
          sequentialGatewayToReplyMs: { p50: +percentile(sequential, 50).toFixed(1), p99: +percentile(sequential, 99).toFixed(1) },
          rssMiBAtEnd: +(await scrape(opsUrl)).rssMiB.toFixed(1),
        },
        null,
        2,
      ),
    );
  } else {
    const endAt = Date.now() + minutes * 60_000;
    let i = 0;
    let afterMinute: Scraped | undefined;
    const drops = mode === "disruption" ? setInterval(() => discord.dropConnection(), 30_000) : undefined;
    const started = Date.now();
    while (Date.now() < endAt) {
      send(i++);
      await new Promise((r) => setTimeout(r, 200));
      if (!afterMinute && Date.now() - started > 60_000) afterMinute = await scrape(opsUrl);
    }
    clearInterval(drops);
    await new Promise((r) => setTimeout(r, 2000));
    const end = await scrape(opsUrl);
    const replies = discord.rest.filter((c) => c.method === "POST" && c.path.endsWith("/messages") && c.status === 200 && c.body?.message_reference);
    const repliedTo = replies.map((c) => c.body.message_reference.message_id as string);
    const doubleAnswers = repliedTo.length - new Set(repliedTo).size;
    const lat = latencies();
    console.log(JSON.stringify({ mode, minutes, messages: i, replies: replies.length, doubleAnswers, resumes: discord.resumes, identifies: discord.identifies, backendErrors: end.errors, gatewayToReplyMs: { p50: +percentile(lat, 50).toFixed(1), p99: +percentile(lat, 99).toFixed(1) }, rssMiB: { afterMinute1: +(afterMinute?.rssMiB ?? NaN).toFixed(1), end: +end.rssMiB.toFixed(1) }, heapMiB: { afterMinute1: +(afterMinute?.heapMiB ?? NaN).toFixed(1), end: +end.heapMiB.toFixed(1) }, crashed: child.exitCode !== null }, null, 2));
  }
  child.kill("SIGTERM");
  await once(child, "exit");
  await discord.stop();
}

await main();
