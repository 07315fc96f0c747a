/**
 * friend eval on synthetic models, for docs/EVAL.md: a synthetic transcript → `friend data eval`
 * (20% of episodes held out, 200 items) → five contestants: the tiny script model alone, with its
 * adapter at scale 1 and 0.5, its Gunther variant (a follow-on speaker no stop sequence knows), and
 * a loopback OpenAI-compatible server scripted to leak a label, invent a next speaker, or say only
 * a stage direction at fixed seeded rates. Every figure describes these stand-ins, not a real model.
 * Run: npm run bench -- eval   (writes bench/.tmp/eval/, prints report.md)
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { main } from "../src/cli.ts";
import type { CommandIo } from "../src/commandline/io.ts";
import { seededRandom } from "../src/data/sft/sampling.ts";
import { syntheticKaggleTranscript } from "../test/data/helpers/synthetic-transcript.ts";
import { FakeOpenAI, type ChatScript } from "../test/fakes/openai-chat.ts";
import { writeTinyModelSet } from "../test/gguf/tiny-models.ts";

const workDir = fileURLToPath(new URL("./.tmp/eval/", import.meta.url));
rmSync(workDir, { recursive: true, force: true });
mkdirSync(workDir, { recursive: true });
writeFileSync(join(workDir, "show.txt"), syntheticKaggleTranscript({ lines: 20_000, seed: 3 }));
const models = writeTinyModelSet(join(workDir, "models"));

// The scripted server's designed mix, drawn per request from a fixed seed: 10% a leaked label,
// 15% an invented next speaker, 3% only a stage direction, the rest a plain line.
const random = seededRandom(42);
const scripted = (): ChatScript => {
  const roll = random();
  if (roll < 0.1) return { text: "Friend: Oh, come on, it's not that big a deal." };
  if (roll < 0.25) return { text: "Okay, fine.\nRoss: (entering) Hey, what did I miss?" };
  if (roll < 0.28) return { text: "(sighs)" };
  return { text: ["Could this BE any more awkward?", "I'm fine. Totally fine.", "Pivot! Pivot!", "We were on a break!"][Math.floor(random() * 4)]! };
};
const fake = (await FakeOpenAI.start()).otherwise(scripted);

const io = (env: Record<string, string>): CommandIo => ({
  out: (line) => console.log(line),
  err: (line) => console.error(line),
  env,
  cwd: workDir,
  interrupt: new AbortController().signal,
});
try {
  let code = await main(["data", "eval", "--input", "show.txt", "--out", "eval.jsonl", "--holdout-episodes", "0.2", "--count", "200"], io({}));
  if (code !== 0) process.exit(code);
  const started = performance.now();
  code = await main(
    [
      "eval", "--items", "eval.jsonl", "--out", "results",
      "--contestant", "ft=openai",
      "--contestant", `base=local:${models.model}`,
      "--contestant", `lora=local:${models.model}+${models.adapter}`,
      "--contestant", `lora-half=local:${models.model}+${models.adapter}@0.5`,
      "--contestant", `gunther=local:${models.guntherModel}`,
    ],
    io({ OPENAI_API_KEY: "unused", OPENAI_BASE_URL: fake.baseURL, OPENAI_MODEL: "ft:synthetic", LLAMA_THREADS: "1", LLAMA_GPU_LAYERS: "0", LLAMA_CONTEXT_SIZE: "2048", LLAMA_SEQUENCES: "4" }),
  );
  console.log(`eval: ${((performance.now() - started) / 1000).toFixed(1)} s`);
  console.log(readFileSync(join(workDir, "results", "report.md"), "utf8"));
  if (code !== 0) process.exit(code);

  // The adapter's designed target: the first 50 items again, with "Hey Rachel!" as the true reply.
  // The adapter makes ` Hey` go on as ` Rachel`, so its perplexity must be lower, and lower at scale 1 than 0.5.
  const items = readFileSync(join(workDir, "eval.jsonl"), "utf8").trimEnd().split("\n").slice(0, 50);
  writeFileSync(join(workDir, "rachel.jsonl"), items.map((line) => JSON.stringify({ ...JSON.parse(line), reply: { speaker: "Joey", text: "Hey Rachel!" } })).join("\n") + "\n");
  code = await main(
    [
      "eval", "--items", "rachel.jsonl", "--out", "rachel",
      "--contestant", `base=local:${models.model}`,
      "--contestant", `lora-half=local:${models.model}+${models.adapter}@0.5`,
      "--contestant", `lora=local:${models.model}+${models.adapter}`,
    ],
    io({ LLAMA_THREADS: "1", LLAMA_GPU_LAYERS: "0", LLAMA_CONTEXT_SIZE: "2048", LLAMA_SEQUENCES: "4" }),
  );
  const summary = JSON.parse(readFileSync(join(workDir, "rachel", "summary.json"), "utf8")) as { contestants: { name: string; metrics: { perplexity: number; perplexity_tokens: number } }[] };
  for (const c of summary.contestants) console.log(`perplexity of "Hey Rachel!": ${c.name} ${c.metrics.perplexity.toPrecision(4)} (${c.metrics.perplexity_tokens} tokens)`);
  process.exitCode = code;
} finally {
  await fake.stop();
}
