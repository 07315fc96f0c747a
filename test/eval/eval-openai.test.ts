import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { XMLValidator } from "fast-xml-parser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli.ts";
import { loadSettings } from "../../src/config/settings.ts";
import type { EvalItem } from "../../src/data/eval-items.ts";
import { wilson } from "../../src/eval/metrics.ts";
import type { Summary } from "../../src/eval/report.ts";
import { captureIo } from "../data/helpers/capture-io.ts";
import { tempFolder } from "../data/helpers/fixtures.ts";
import { FakeOpenAI, type ChatRequest, type ChatScript } from "../fakes/openai-chat.ts";

const persona = loadSettings().persona;
const dir = tempFolder();
let fake: FakeOpenAI;

/** Item i asks "question i"; the scripted model's answer to it is designed below. */
function item(i: number, overrides: Partial<EvalItem> = {}): EvalItem {
  return {
    id: `S01E01 #1:${i}`,
    episode: "S01E01",
    scene: [
      { speaker: "Monica", text: "Okay, everybody relax." },
      { speaker: "Joey", text: "I'm always relaxed." },
    ],
    addressed: { speaker: "Ross", text: `question ${i}` },
    reply: { speaker: "Joey", text: "How you doin'?" },
    ...overrides,
  };
}

/**
 * The designed artefacts, over 12 asked items: labels in 3 forms the cleaner knows (items 0-2),
 * an invented next speaker in the text (3, 4), only a stage direction, twice (5), plain replies
 * (6-9), and a server error (10, 11). So over the 10 answered: leak 3, follow-on 2, empty 1;
 * over all 12: fallback 1, errors 2.
 */
function designed(i: number): ChatScript {
  if (i === 0) return { text: "Friend: Could I BE more relaxed?" };
  if (i === 1) return { text: "**Friend:** Relax? Me?" };
  if (i === 2) return { text: "Friend： sure." };
  if (i === 3 || i === 4) return { text: "Okay.\nRoss: (entering) Hey Ben!" };
  if (i === 5) return { text: "(sighs)" };
  if (i >= 10) return { status: 400, body: { error: { message: "scripted bad request", type: "invalid_request_error" } } };
  return { text: "Fine, fine." };
}

function questionOf(request: ChatRequest): number {
  return Number(/question (\d+)/.exec(request.body.messages.at(-1)!.content)![1]);
}

const ITEMS = [
  ...Array.from({ length: 12 }, (_, i) => item(i)),
  item(100, { reply: { speaker: "Gunther", text: "Rachel..." } }),
  item(101, { reply: { speaker: "Joey", text: "   " } }),
  item(102, { scene: Array.from({ length: 45 }, (_, k) => ({ speaker: "Monica", text: `line ${k}` })) }),
];

async function friend(argv: string[], options: { interruptWhen?: () => boolean } = {}) {
  const captured = captureIo({
    cwd: dir.path,
    env: { OPENAI_API_KEY: "sk-test-secret", OPENAI_BASE_URL: fake.baseURL, OPENAI_MODEL: "ft:good" },
  });
  let poll: NodeJS.Timeout | undefined;
  if (options.interruptWhen) {
    poll = setInterval(() => {
      if (options.interruptWhen!()) captured.interrupt();
    }, 5);
  }
  try {
    const code = await main(argv, captured.io);
    return { code, out: captured.out, err: captured.err };
  } finally {
    clearInterval(poll);
  }
}

const readSummary = (out: string) => JSON.parse(readFileSync(join(dir.path, out, "summary.json"), "utf8")) as Summary;
const readSamples = (out: string) =>
  readFileSync(join(dir.path, out, "samples.jsonl"), "utf8")
    .trimEnd()
    .split("\n")
    .map((line) => JSON.parse(line) as { contestant: string; item: string; outcome: string });
const goodRequests = () => fake.requests.filter((r) => r.body.model === "ft:good");

beforeAll(async () => {
  fake = await FakeOpenAI.start();
  fake.otherwise((request) => (request.body.model === "broken" ? { status: 401, body: { error: { message: "bad key", type: "invalid_request_error" } } } : designed(questionOf(request))));
  writeFileSync(join(dir.path, "items.jsonl"), ITEMS.map((x) => JSON.stringify(x)).join("\n") + "\n");
});
afterAll(async () => {
  await fake.stop();
  dir.remove();
});

describe("friend eval against a scripted OpenAI-compatible server", () => {
  it("reports the designed rates exactly, with their n and Wilson intervals; a failing contestant gets one line and the other still runs", async () => {
    const args = ["eval", "--items", "items.jsonl", "--contestant", "broken=openai:broken", "--contestant", "good=openai", "--out", "run", "--temperature", "0.3", "--seed", "7"];
    const { code, out, err } = await friend(args);
    expect(err.filter((l) => l.startsWith("friend eval:"))).toEqual([expect.stringMatching(/^friend eval: contestant broken \(openai:broken\) failed: .*401/)]);
    expect(code).toBe(1);
    expect(out).toContain("items: 12 of 15 usable (skipped: 1 unknown speaker, 1 empty reply, 1 oversized)");
    expect(err.join("\n")).not.toContain("sk-test-secret");
    // Not a terminal: plain progress lines.
    expect(err).toContain("good: 0/12 items done, starting");
    expect(err).toContain("good: 12/12 items (100%)");

    const summary = readSummary("run");
    expect(summary.items).toEqual({ read: 15, used: 12, skipped: { unknown_speaker: 1, empty_reply: 1, oversized: 1 } });
    expect(summary.settings).toMatchObject({ temperature: 0.3, seed: 7, persona: "Friend" });
    const [broken, good] = summary.contestants;
    expect(broken).toMatchObject({ name: "broken", spec: "openai:broken", items: 0 });
    expect(broken!.failed).toMatch(/401/);
    expect(good).toMatchObject({ name: "good", spec: "openai", model: "openai: ft:good", items: 12, failed: null });
    const m = good!.metrics;
    const exact = (count: number, n: number) => ({ count, n, rate: count / n, ci95: wilson(count, n) });
    expect(m.label_leak).toEqual(exact(3, 10));
    expect(m.follow_on).toEqual(exact(2, 10));
    expect(m.empty_after_clean).toEqual(exact(1, 10));
    expect(m.fallback).toEqual(exact(1, 12));
    expect(m.backend_error).toEqual(exact(2, 12));
    expect(m.errors_by_kind).toEqual({ bad_request: 2 });
    // Streamed word by word: the two invented scenes were cut by the cleaner; the rest ended as "stop".
    expect(m.ends.cleaner).toEqual(exact(2, 10));
    expect(m.ends.stopOrEos).toEqual(exact(8, 10));
    // The server cannot say whether a stop sequence matched: follow-on counts only what showed.
    expect(m.follow_on_stops_seen).toBe(false);
    expect(m.perplexity).toBeNull();
    expect(m.reply_chars_median).toBe("Fine, fine.".length);
    expect(wilson(3, 10)).toEqual([expect.closeTo(0.1078, 3), expect.closeTo(0.6032, 3)]);

    // Every item went the bot's way: persona prompt, scene as named turns, the persona's own lines as its turns, stop sequences.
    // Show characters speak as users would under those names: never as the cast member itself.
    const request = goodRequests().find((r) => questionOf(r) === 6)!;
    expect(request.body.messages).toEqual([
      { role: "system", content: persona.systemPrompt.replaceAll("{user}", "User_Ross") },
      { role: "user", name: "User_Monica", content: "Okay, everybody relax." },
      { role: "assistant", content: "I'm always relaxed." },
      { role: "user", name: "User_Ross", content: "question 6" },
    ]);
    expect(request.body.stop).toEqual(["\nUser Ross:", "\nUser Monica:", "\nRoss:", "\nRachel:"]);
    expect(request.body.temperature).toBe(0.3);
    expect(request.body.seed).toEqual(expect.any(Number));
    // Item 5 was empty after cleaning, so the bot asked once more, then used its fallback line.
    expect(goodRequests().filter((r) => questionOf(r) === 5)).toHaveLength(2);
    const samples = readSamples("run");
    expect(samples.find((s) => s.item === "S01E01 #1:5")).toMatchObject({ outcome: "fallback", posted: persona.fallbackReply });
    expect(samples.find((s) => s.item === "S01E01 #1:10")).toMatchObject({ outcome: "error", error: { kind: "bad_request" } });
    expect(samples.find((s) => s.item === "S01E01 #1:3")).toMatchObject({ posted: "Okay.", attempts: [{ raw: "Okay.\nRoss: ", cut: ["\nRoss: "], end: "cleaner" }] });

    const report = readFileSync(join(dir.path, "run", "report.md"), "utf8");
    expect(report).toContain("| label leak | 3/10 = 30.0% [10.8%, 60.3%] |");
    expect(report).toContain("does not say whether a stop sequence matched");
    expect(report).toContain("temperature 0.3");
    expect(report.match(/^### /gm)).toHaveLength(5);
    const svg = readFileSync(join(dir.path, "run", "report.svg"), "utf8");
    expect(XMLValidator.validate(svg)).toBe(true);
    expect(svg).toMatch(/^<svg[^>]+xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    for (const name of ["good", "broken"]) expect(svg).toContain(name);
  });

  it("a rerun into the same folder asks only for the items not yet answered, with the same seeds", async () => {
    const before = goodRequests().length;
    const seeds = new Map(goodRequests().map((r) => [questionOf(r), r.body.seed]));
    const { code, out } = await friend(["eval", "--items", "items.jsonl", "--contestant", "good=openai", "--out", "run", "--temperature", "0.3", "--seed", "7"]);
    expect(code).toBe(0);
    expect(out).toContain("resuming: 10 answers from the earlier run in " + join(dir.path, "run") + " are kept");
    const again = goodRequests().slice(before);
    expect(again.map(questionOf).sort()).toEqual([10, 11]);
    for (const r of again) expect(r.body.seed).toBe(seeds.get(questionOf(r)));
    expect(readSummary("run").contestants[0]!.metrics.label_leak.count).toBe(3);
  });

  it("refuses to pool a rerun with other settings into the same folder", async () => {
    const { code, err } = await friend(["eval", "--items", "items.jsonl", "--contestant", "good=openai", "--out", "run", "--temperature", "0.9", "--seed", "7"]);
    expect(code).toBe(2);
    expect(err).toEqual([expect.stringMatching(/holds a run with other settings \(temperature 0\.3 there, 0\.9 now\); choose another --out$/)]);
  });

  it("Ctrl-C writes the items finished; the same command then goes on from there", async () => {
    fake.otherwise((request) => ({ ...(designed(questionOf(request)) as object), chunkDelayMs: 20 }) as ChatScript);
    const start = goodRequests().length;
    const first = await friend(["eval", "--items", "items.jsonl", "--contestant", "good=openai", "--out", "stopped"], { interruptWhen: () => goodRequests().length - start >= 6 });
    expect(first.code).toBe(130);
    expect(first.err.at(-1)).toMatch(/stopped; the items finished are written/);
    const kept = readSamples("stopped");
    expect(kept.length).toBeGreaterThan(0);
    expect(kept.length).toBeLessThan(12);
    expect(readSummary("stopped").contestants[0]!.items).toBe(kept.length);

    const second = await friend(["eval", "--items", "items.jsonl", "--contestant", "good=openai", "--out", "stopped"]);
    expect(second.code).toBe(0);
    const all = readSamples("stopped");
    expect(all.map((s) => s.item)).toEqual(Array.from({ length: 12 }, (_, i) => `S01E01 #1:${i}`));
    expect(readSummary("stopped").contestants[0]!.metrics.label_leak).toMatchObject({ count: 3, n: 10 });
  });

  it("bad lines in the items file are each reported with their number, and nothing is run or written", async () => {
    const good = JSON.stringify(item(0));
    const lines = [good, "{not json", JSON.stringify(item(1)), JSON.stringify({ ...item(2), reply: undefined }), JSON.stringify({ ...item(3), scene: "no" }), good.replace('"S01E01 #1:0"', '"S01E01 #1:1"')];
    writeFileSync(join(dir.path, "bad.jsonl"), lines.join("\n") + "\n");
    const before = fake.requests.length;
    const { code, err } = await friend(["eval", "--items", "bad.jsonl", "--contestant", "good=openai", "--out", "bad-run"]);
    expect(code).toBe(1);
    expect(err).toEqual([
      "bad.jsonl:2: not valid JSON",
      "bad.jsonl:4: missing reply",
      "bad.jsonl:5: scene: Invalid input: expected array, received string",
      'bad.jsonl:6: id "S01E01 #1:1" is used twice',
      "friend eval: 4 lines are not evaluation items; fix or remove them (friend data eval writes the format)",
    ]);
    expect(fake.requests.length).toBe(before);
    expect(existsSync(join(dir.path, "bad-run"))).toBe(false);
  });

  it.each([
    [["--contestant", "x"], "--contestant takes NAME=SPEC, not \"x\""],
    [["--contestant", "a=gpt"], '--contestant a: "gpt" is not openai, openai:MODEL, local or local:MODEL[+ADAPTER[@SCALE]]'],
    [["--contestant", "a=openai", "--contestant", "a=local"], 'two contestants are named "a"'],
    [["--contestant", "a b=openai"], "--contestant name \"a b\" must be 1-40 letters, digits, '.', '_' or '-'"],
    [["--contestant", "a=local:m.gguf+"], '--contestant a: nothing after "+"; give the adapter, or leave "+" out for the base model'],
    [["--contestant", "a=openai", "--temperature", "hot"], '--temperature must be a number from 0 to 2, not "hot"'],
    [[], "give at least one --contestant NAME=SPEC"],
  ])("bad options %j get one line and exit 2", async (extra, message) => {
    const { code, err } = await friend(["eval", "--items", "items.jsonl", ...extra]);
    expect(err).toEqual([`friend eval: ${message}`]);
    expect(code).toBe(2);
  });
});
