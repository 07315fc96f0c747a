import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import type OpenAI from "openai";
import { APIConnectionError, APIConnectionTimeoutError, APIError } from "openai";
import type { FineTuningJob } from "openai/resources/fine-tuning/jobs/jobs";
import { FinetuneError, InputError } from "../errors.ts";
import { UsageError } from "../../commandline/errors.ts";
import { updateEnvFile } from "../../commandline/env-file.ts";
import { createFinetuneJob, followJob, openAIClientFrom, uploadTrainingFile } from "../finetune/job.ts";
import { DEFAULT_FINETUNE_MODEL, FINETUNE_MODELS, MIN_TRAINING_EXAMPLES, type FinetuneModel } from "../openai-models.ts";
import { estimateTrainingCost, formatTrainingCost } from "../sft/training-cost.ts";
import { checkTrainingJsonl, loadExampleTokenizer } from "../sft/training-example.ts";
import { envWithDotenv, type CommandIo } from "../../commandline/io.ts";
import { finetuneModelOption } from "./options.ts";
import { integerOption, parseCommandArgs, requiredOption } from "../../commandline/args.ts";

/** How often to poll OpenAI; FRIEND_POLL_MS or --poll-ms override it (the tests poll fast). */
const DEFAULT_POLL_MS = 10_000;
/** Exit code after Ctrl-C, the shell's convention for SIGINT. */
const EXIT_DETACHED = 130;

const FOLLOW_USAGE = `  --write-env      on success, set OPENAI_MODEL to the new model in the env file
  --env-file FILE  the env file to read and update (default .env)
  --poll-ms N      milliseconds between status checks (default ${DEFAULT_POLL_MS}, or FRIEND_POLL_MS)`;

export const FINETUNE_USAGE = `Usage: friend finetune --file train.jsonl [options]

Validates the file, uploads it, starts an OpenAI fine-tuning job and follows it to the end.
Ctrl-C detaches and leaves the job running; reattach with \`friend finetune status <job>\`.
Reads OPENAI_API_KEY and OPENAI_BASE_URL from the environment or the env file.

  --file FILE      training JSONL, e.g. from \`friend data sft\` (required)
  --model NAME     ${Object.keys(FINETUNE_MODELS).join(" or ")} (default ${DEFAULT_FINETUNE_MODEL})
  --epochs N       training epochs, or "auto" for OpenAI's choice (default 3, as in the original)
  --suffix TEXT    added to the model name, up to 64 characters (default friends)
${FOLLOW_USAGE}`;

export const FINETUNE_STATUS_USAGE = `Usage: friend finetune status <job-id> [options]

Reattaches to a fine-tuning job and follows it to the end; Ctrl-C detaches again.

  --cancel         cancel the job, then follow it until it stops
${FOLLOW_USAGE}`;

const FOLLOW_OPTIONS = {
  "write-env": { type: "boolean" },
  "env-file": { type: "string", default: ".env" },
  "poll-ms": { type: "string" },
} as const;

export async function runFinetune(argv: string[], io: CommandIo): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    ...FOLLOW_OPTIONS,
    file: { type: "string" },
    model: { type: "string", default: DEFAULT_FINETUNE_MODEL },
    epochs: { type: "string", default: "3" },
    suffix: { type: "string", default: "friends" },
  });
  if (values.help) {
    io.out(FINETUNE_USAGE);
    return 0;
  }
  const file = resolve(io.cwd, requiredOption(values.file, "file"));
  const model = finetuneModelOption(values.model);
  const epochs = values.epochs === "auto" ? "auto" : integerOption(values.epochs, "epochs", 3, 1, 50);
  const suffix = suffixOption(values.suffix);
  const env = envWithDotenv(io, values["env-file"]);
  const pollMs = pollMsOption(values["poll-ms"], env);

  await validateTrainingFile(io, file, model, epochs);
  const client = openAIClientFrom(env);
  return withApiErrors(env, async () => {
    io.out(`uploading ${values.file}...`);
    const fileId = await uploadTrainingFile(client, file, pollMs);
    io.out(`uploaded as ${fileId}`);
    const job = await createFinetuneJob(client, { model, trainingFile: fileId, suffix, epochs });
    io.out(`started job ${job.id}; Ctrl-C detaches, \`friend finetune status ${job.id}\` reattaches`);
    return follow(io, client, job.id, { pollMs, writeEnv: values["write-env"], envFile: values["env-file"], cancelling: false });
  });
}

export async function runFinetuneStatus(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, { ...FOLLOW_OPTIONS, cancel: { type: "boolean" } }, 1);
  if (values.help) {
    io.out(FINETUNE_STATUS_USAGE);
    return 0;
  }
  const jobId = positionals[0];
  if (!jobId) throw new UsageError("give the job id, e.g. friend finetune status ftjob-abc123");
  const env = envWithDotenv(io, values["env-file"]);
  const pollMs = pollMsOption(values["poll-ms"], env);
  const client = openAIClientFrom(env);
  return withApiErrors(env, async () => {
    if (values.cancel) {
      await client.fineTuning.jobs.cancel(jobId);
      io.out(`cancelling job ${jobId}`);
    }
    return follow(io, client, jobId, { pollMs, writeEnv: values["write-env"], envFile: values["env-file"], cancelling: values.cancel ?? false });
  });
}

interface FollowSettings {
  pollMs: number;
  writeEnv: boolean | undefined;
  envFile: string;
  /** A job cancelled on request is a success for the command. */
  cancelling: boolean;
}

async function follow(io: CommandIo, client: OpenAI, jobId: string, settings: FollowSettings): Promise<number> {
  const outcome = await followJob(client, jobId, { pollMs: settings.pollMs, signal: io.interrupt, print: io.out });
  if (outcome === "detached") {
    io.out(`detached; job ${jobId} keeps running. Reattach with: friend finetune status ${jobId} (add --cancel to cancel it)`);
    return EXIT_DETACHED;
  }
  return finish(io, outcome, settings);
}

function finish(io: CommandIo, job: FineTuningJob, settings: FollowSettings): number {
  if (job.status === "cancelled") {
    if (settings.cancelling) {
      io.out(`job ${job.id} cancelled`);
      return 0;
    }
    throw new FinetuneError(`job ${job.id} was cancelled`);
  }
  if (job.status === "failed") {
    const reason = job.error?.message ? `: ${job.error.message}${job.error.code ? ` (${job.error.code})` : ""}` : "";
    throw new FinetuneError(`job ${job.id} failed${reason}`);
  }
  const modelId = job.fine_tuned_model;
  if (!modelId) throw new FinetuneError(`job ${job.id} succeeded but names no fine-tuned model`);
  io.out(`fine-tuned model: ${modelId}`);
  if (settings.writeEnv) {
    updateEnvFile(resolve(io.cwd, settings.envFile), "OPENAI_MODEL", modelId);
    io.out(`set OPENAI_MODEL=${modelId} in ${settings.envFile}`);
  } else {
    io.out(`use it with OPENAI_MODEL=${modelId} (or rerun with --write-env)`);
  }
  return 0;
}

/** Checks every line as OpenAI will, so a bad file fails here and not after an upload. */
async function validateTrainingFile(io: CommandIo, file: string, model: FinetuneModel, epochs: number | "auto"): Promise<void> {
  if (!existsSync(file)) throw new InputError(file, undefined, "no such file; build one with `friend data sft`");
  const checked = checkTrainingJsonl(readFileSync(file, "utf8"), await loadExampleTokenizer(model));
  const problems = checked.flatMap(({ line, check }) => (check.ok ? [] : [{ line, reason: check.reason }]));
  const first = problems[0];
  if (first) {
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more bad lines)` : "";
    throw new InputError(file, first.line, `${first.reason}${more}`);
  }
  if (checked.length < MIN_TRAINING_EXAMPLES) {
    throw new InputError(file, undefined, `${checked.length} examples; OpenAI needs at least ${MIN_TRAINING_EXAMPLES}`);
  }
  const tokens = checked.map(({ check }) => (check.ok ? check.tokens : 0));
  for (const line of formatTrainingCost(estimateTrainingCost(tokens, model, epochs === "auto" ? undefined : epochs))) io.out(line);
}

/** API and network failures as one line; a connection failure names the server tried. */
async function withApiErrors(env: Readonly<Record<string, string | undefined>>, work: () => Promise<number>): Promise<number> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof APIConnectionTimeoutError) throw new FinetuneError(err.message);
    if (err instanceof APIConnectionError) {
      throw new FinetuneError(`cannot reach ${env.OPENAI_BASE_URL || "https://api.openai.com/v1"} (${err.message}); check OPENAI_BASE_URL and the network`);
    }
    if (err instanceof APIError) throw new FinetuneError(`the API refused: ${err.message}`);
    throw err;
  }
}

function suffixOption(value: string): string {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(value)) throw new UsageError(`--suffix must be 1-64 letters, digits, _ or -, not "${value}"`);
  return value;
}

function pollMsOption(value: string | undefined, env: Readonly<Record<string, string | undefined>>): number {
  if (value !== undefined) return integerOption(value, "poll-ms", DEFAULT_POLL_MS, 1, 3_600_000);
  return integerOption(env.FRIEND_POLL_MS, "poll-ms (FRIEND_POLL_MS)", DEFAULT_POLL_MS, 1, 3_600_000);
}
