import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pino } from "pino";
import { loadConfig, type Config } from "../config/env.ts";
import { ConfigError } from "../config/errors.ts";
import type { Settings } from "../config/settings.ts";
import { envWithDotenv, type CommandIo } from "../commandline/io.ts";
import { integerOption, parseCommandArgs, requiredOption } from "../commandline/args.ts";
import { CommandError, UsageError } from "../commandline/errors.ts";
import type { EvalItem } from "../data/eval-items.ts";
import { createLogger } from "../log.ts";
import { ratesChart } from "./chart.ts";
import { CONTESTANT_USAGE, contestantBackend, describeContestant, parseContestant, type ContestantSpec } from "./contestant.ts";
import { SKIP_KINDS, readItems, skipReason, type SkipKind } from "./items.ts";
import { summarise, type Sample } from "./metrics.ts";
import { progressFor } from "./progress.ts";
import { chartRows, renderReport, type ContestantSummary, type RunSettings, type Summary } from "./report.ts";
import { runContestant } from "./runner.ts";
import { writeFileAtomic } from "../commandline/files.ts";

export const EVAL_USAGE = `Usage: friend eval --items FILE.jsonl --contestant NAME=SPEC [--contestant NAME=SPEC …] [options]

Answers every item (from \`friend data eval\`) with every contestant through Friend's own reply path:
the same prompt rendering and fitting, stop sequences, cleaner, regeneration and fallback as the
bot. Writes samples.jsonl, summary.json, report.md and report.svg into --out (docs/EVAL.md).

  --items FILE             evaluation items (required)
${CONTESTANT_USAGE}
  --out DIR                output folder (default eval-results); a rerun into it skips the items
                           already answered, and Ctrl-C writes what is finished
  --seed N                 fixes the sampling of every generation (default 1)
  --temperature T          overrides generation.temperature for this run
  --settings FILE          settings (persona, window, generation) as the bot's (default config/friend.json)

Backends read the same environment as the bot (.env too): OPENAI_*, LLAMA_*, HF_TOKEN.`;

/** samples.jsonl is rewritten at most this often while items finish, so a crash loses little. */
const CHECKPOINT_MS = 15_000;

export async function runEval(argv: string[], io: CommandIo): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    items: { type: "string" },
    contestant: { type: "string", multiple: true },
    out: { type: "string", default: "eval-results" },
    seed: { type: "string" },
    temperature: { type: "string" },
    settings: { type: "string" },
  });
  if (values.help) {
    io.out(EVAL_USAGE);
    return 0;
  }
  const itemsPath = requiredOption(values.items, "items");
  const contestants = (values.contestant ?? []).map(parseContestant);
  if (contestants.length === 0) throw new UsageError("give at least one --contestant NAME=SPEC");
  const duplicate = contestants.find((c, i) => contestants.findIndex((d) => d.name === c.name) !== i);
  if (duplicate) throw new UsageError(`two contestants are named "${duplicate.name}"`);
  const seed = integerOption(values.seed, "seed", 1, 0, 2 ** 32 - 1);
  const temperature = values.temperature === undefined ? undefined : Number(values.temperature);
  if (temperature !== undefined && !(Number.isFinite(temperature) && temperature >= 0 && temperature <= 2)) {
    throw new UsageError(`--temperature must be a number from 0 to 2, not "${values.temperature}"`);
  }

  const env = envWithDotenv(io, ".env");
  let config: Config;
  try {
    // Each contestant checks its own backend's variables; Discord's are not needed.
    config = loadConfig({ ...env, FRIEND_BACKEND: "local" }, values.settings ? resolve(io.cwd, values.settings) : undefined, { discord: false });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.err(err.message);
    return 1;
  }
  const settings: Settings = temperature === undefined ? config.settings : { ...config.settings, generation: { ...config.settings.generation, temperature } };
  config = { ...config, settings };

  const items = loadItems(io, itemsPath);
  if (!items) return 1;
  const skipped = Object.fromEntries(SKIP_KINDS.map((k) => [k, 0])) as Record<SkipKind, number>;
  const usable = items.filter((item) => {
    const reason = skipReason(item, settings);
    if (reason) skipped[reason]++;
    return reason === null;
  });
  const skippedText = SKIP_KINDS.filter((k) => skipped[k]).map((k) => `${skipped[k]} ${k.replace(/_/g, " ")}`);
  io.out(`items: ${usable.length} of ${items.length} usable${skippedText.length ? ` (skipped: ${skippedText.join(", ")})` : ""}`);
  if (usable.length === 0) throw new CommandError(`no usable items in ${itemsPath}`);

  const runSettings: RunSettings = {
    temperature: settings.generation.temperature,
    top_p: settings.generation.topP,
    max_tokens: settings.generation.maxTokens,
    seed,
    stream: settings.generation.stream,
    timeout_ms: settings.generation.timeoutMs,
    window_max_turns: settings.window.maxTurns,
    persona: settings.persona.name,
  };
  const outDir = resolve(io.cwd, values.out);
  mkdirSync(outDir, { recursive: true });
  const usableIds = new Set(usable.map((item) => item.id));
  const samples = resumeSamples(io, outDir, runSettings, contestants).filter((s) => usableIds.has(s.item));

  const logger = env.LOG_LEVEL
    ? createLogger({ level: config.logLevel, secrets: [config.openai.apiKey ?? "", env.HF_TOKEN ?? ""], destination: pino.destination(2) })
    : pino({ enabled: false });
  const interrupt = io.interrupt;
  const progress = progressFor(process.stderr, io.err);
  const summaries: ContestantSummary[] = [];
  let lastCheckpoint = Date.now();
  const write = async (final: boolean): Promise<void> => {
    const ordered = orderSamples(samples, contestants, usable);
    writeFileAtomic(join(outDir, "samples.jsonl"), ordered.map((s) => JSON.stringify(s)).join("\n") + (ordered.length ? "\n" : ""));
    if (!final) return;
    const summary: Summary = { version: 1, items_file: itemsPath, settings: runSettings, items: { read: items.length, used: usable.length, skipped }, contestants: summaries };
    writeFileAtomic(join(outDir, "summary.json"), `${JSON.stringify(summary, null, 2)}\n`);
    writeFileAtomic(join(outDir, "report.md"), renderReport(summary, ordered, usable));
    writeFileAtomic(join(outDir, "report.svg"), await ratesChart(chartRows(summaries), `Friend eval: ${usable.length} items, temperature ${runSettings.temperature}, seed ${seed}`,
      `contestants: ${summaries.map((c) => (c.failed ? `${c.name} (${c.failed.startsWith("not run") ? "not run" : "failed"})` : c.name)).join(", ")}`,
    ));
  };

  for (const contestant of contestants) {
    const own = () => samples.filter((s) => s.contestant === contestant.name);
    const summary: ContestantSummary = { name: contestant.name, spec: contestant.spec, model: contestant.spec, items: 0, failed: null, metrics: summarise([]) };
    summaries.push(summary);
    if (interrupt.aborted) {
      summary.failed = "not run: the run was stopped";
      continue;
    }
    const done = new Set(own().filter((s) => s.outcome !== "error").map((s) => s.item));
    const remaining = usable.filter((item) => !done.has(item.id));
    let backend;
    try {
      backend = contestantBackend(contestant, config, logger);
      summary.model = describeContestant(backend);
    } catch (err) {
      summary.failed = (err as Error).message;
    }
    if (backend && remaining.length > 0) {
      progress.start(contestant.name, usable.length, done.size);
      try {
        summary.failed = await runContestant({
          contestant,
          backend,
          items: remaining,
          settings,
          concurrency: contestant.backend === "local" ? config.local.sequences : settings.limits.concurrency,
          seed,
          logger,
          signal: interrupt,
          onSample: (sample) => {
            // A rerun replaces an item's earlier backend error with its new answer.
            const at = samples.findIndex((s) => s.contestant === sample.contestant && s.item === sample.item);
            if (at >= 0) samples.splice(at, 1, sample);
            else samples.push(sample);
            progress.tick();
            if (Date.now() - lastCheckpoint >= CHECKPOINT_MS) {
              lastCheckpoint = Date.now();
              void write(false);
            }
          },
        });
      } finally {
        progress.stop();
        await backend.close();
      }
    } else if (backend) {
      await backend.close();
    }
    summary.items = own().length;
    summary.metrics = summarise(own());
    if (summary.failed) io.err(`friend eval: contestant ${contestant.name} (${contestant.spec}) failed: ${summary.failed}`);
    else io.out(`${contestant.name}: ${summary.items} items answered`);
  }

  await write(true);
  io.out(`wrote ${join(values.out, "report.md")}, summary.json, samples.jsonl and report.svg`);
  if (interrupt.aborted) {
    io.err(`friend eval: stopped; the items finished are written, and the same command goes on from there`);
    return 130;
  }
  return summaries.some((s) => s.failed) ? 1 : 0;
}

/** The items, or null after printing every line that is not an item (with its number). */
function loadItems(io: CommandIo, path: string): EvalItem[] | null {
  let file;
  try {
    file = readItems(resolve(io.cwd, path));
  } catch (err) {
    throw new CommandError(`cannot read ${path} (${(err as Error).message})`);
  }
  if (file.bad.length === 0) return file.items;
  for (const bad of file.bad.slice(0, 20)) io.err(`${path}:${bad.line}: ${bad.problem}`);
  if (file.bad.length > 20) io.err(`… and ${file.bad.length - 20} more bad lines`);
  io.err(`friend eval: ${file.bad.length} line${file.bad.length === 1 ? " is" : "s are"} not evaluation items; fix or remove ${file.bad.length === 1 ? "it" : "them"} (friend data eval writes the format)`);
  return null;
}

/**
 * The samples of an earlier run into the same folder, for the contestants still named with the
 * same spec. A run with other settings is refused: its figures could not be pooled with these.
 */
function resumeSamples(io: CommandIo, outDir: string, settings: RunSettings, contestants: readonly ContestantSpec[]): Sample[] {
  const summaryPath = join(outDir, "summary.json");
  const samplesPath = join(outDir, "samples.jsonl");
  if (!existsSync(summaryPath) || !existsSync(samplesPath)) return [];
  let previous: Summary;
  let samples: Sample[];
  try {
    previous = JSON.parse(readFileSync(summaryPath, "utf8")) as Summary;
    samples = readFileSync(samplesPath, "utf8")
      .split("\n")
      .filter((line) => line.trim())
      .map((line) => JSON.parse(line) as Sample);
  } catch (err) {
    throw new CommandError(`cannot read the earlier run in ${outDir} (${(err as Error).message}); choose another --out`);
  }
  const differs = (Object.keys(settings) as (keyof RunSettings)[]).filter((k) => previous.settings?.[k] !== settings[k]);
  if (differs.length) {
    throw new UsageError(`${outDir} holds a run with other settings (${differs.map((k) => `${k} ${previous.settings?.[k]} there, ${settings[k]} now`).join("; ")}); choose another --out`);
  }
  const sameSpec = new Set(contestants.filter((c) => previous.contestants?.some((p) => p.name === c.name && p.spec === c.spec)).map((c) => c.name));
  const kept = samples.filter((s) => sameSpec.has(s.contestant));
  if (kept.length) io.out(`resuming: ${kept.filter((s) => s.outcome !== "error").length} answers from the earlier run in ${outDir} are kept`);
  return kept;
}

function orderSamples(samples: readonly Sample[], contestants: readonly ContestantSpec[], items: readonly EvalItem[]): Sample[] {
  const itemOrder = new Map(items.map((item, i) => [item.id, i]));
  const contestantOrder = new Map(contestants.map((c, i) => [c.name, i]));
  return [...samples].sort(
    (a, b) => contestantOrder.get(a.contestant)! - contestantOrder.get(b.contestant)! || (itemOrder.get(a.item) ?? 0) - (itemOrder.get(b.item) ?? 0),
  );
}
