import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import OpenAI, { APIUserAbortError, toFile } from "openai";
import type { FineTuningJob, FineTuningJobEvent } from "openai/resources/fine-tuning/jobs/jobs";
import { FinetuneError } from "../errors.ts";
import { UsageError } from "../../commandline/errors.ts";

/** Job states after which nothing more happens. */
export const FINISHED_STATUSES: ReadonlySet<FineTuningJob["status"]> = new Set(["succeeded", "failed", "cancelled"]);

/** A client for OPENAI_BASE_URL (OpenAI itself when unset) with OPENAI_API_KEY. */
export function openAIClientFrom(env: Readonly<Record<string, string | undefined>>): OpenAI {
  const apiKey = env.OPENAI_API_KEY;
  if (!apiKey) throw new UsageError("OPENAI_API_KEY is not set; put it in .env or the environment");
  return new OpenAI({ apiKey, baseURL: env.OPENAI_BASE_URL || undefined, maxRetries: 2, timeout: 120_000 });
}

/** Uploads a training file with purpose `fine-tune` and waits until OpenAI has processed it. */
export async function uploadTrainingFile(client: OpenAI, path: string, pollMs: number): Promise<string> {
  // Read up front: training sets are small, and a retried upload must not depend on a half-read stream.
  const file = await toFile(readFileSync(path), basename(path));
  const uploaded = await client.files.create({ file, purpose: "fine-tune" });
  const processed = await client.files.waitForProcessing(uploaded.id, { pollInterval: pollMs });
  if (processed.status !== "processed") {
    throw new FinetuneError(`OpenAI could not process ${path} (file ${uploaded.id} is ${processed.status}${processed.status_details ? `: ${processed.status_details}` : ""})`);
  }
  return uploaded.id;
}

export interface JobRequest {
  model: string;
  trainingFile: string;
  suffix: string;
  epochs: number | "auto";
}

/** Creates a supervised job; hyperparameters go inside `method` (the top-level field is deprecated). */
export function createFinetuneJob(client: OpenAI, request: JobRequest): Promise<FineTuningJob> {
  return client.fineTuning.jobs.create({
    model: request.model,
    training_file: request.trainingFile,
    suffix: request.suffix,
    method: { type: "supervised", supervised: { hyperparameters: { n_epochs: request.epochs } } },
  });
}

export interface FollowOptions {
  pollMs: number;
  /** Aborting detaches: the job keeps running on OpenAI's side. */
  signal: AbortSignal;
  print(line: string): void;
}

/**
 * Prints the job's new events and status changes until it finishes, then returns it;
 * returns "detached" when the signal aborts first.
 */
export async function followJob(client: OpenAI, jobId: string, options: FollowOptions): Promise<FineTuningJob | "detached"> {
  const seen = new Set<string>();
  let lastStatus: string | undefined;
  try {
    for (;;) {
      const { job, events } = await pollOnce(client, jobId, options.signal);
      for (const event of newEventsOldestFirst(events, seen)) options.print(describeEvent(event));
      if (job.status !== lastStatus) {
        options.print(`status: ${job.status}`);
        lastStatus = job.status;
      }
      if (FINISHED_STATUSES.has(job.status)) return job;
      await sleep(options.pollMs, undefined, { signal: options.signal });
    }
  } catch (err) {
    if (options.signal.aborted && (err instanceof APIUserAbortError || (err as Error).name === "AbortError")) return "detached";
    throw err;
  }
}

/**
 * One status check. The SDK never removes the abort listener it adds to a request's signal,
 * so each poll gets its own signal, linked to the long-lived one only while it runs.
 */
async function pollOnce(client: OpenAI, jobId: string, interrupt: AbortSignal) {
  const poll = new AbortController();
  const abortPoll = () => poll.abort();
  interrupt.addEventListener("abort", abortPoll, { once: true });
  if (interrupt.aborted) poll.abort();
  try {
    const job = await client.fineTuning.jobs.retrieve(jobId, { signal: poll.signal });
    const page = await client.fineTuning.jobs.listEvents(jobId, { limit: 100 }, { signal: poll.signal });
    return { job, events: page.data };
  } finally {
    interrupt.removeEventListener("abort", abortPoll);
  }
}

/** The API lists events newest first; print each once, in the order they happened. */
export function newEventsOldestFirst(events: readonly FineTuningJobEvent[], seen: Set<string>): FineTuningJobEvent[] {
  const fresh = events.filter((e) => !seen.has(e.id)).reverse();
  for (const event of fresh) seen.add(event.id);
  return fresh.sort((a, b) => a.created_at - b.created_at);
}

/** `12:03:44 Step 10/30: training loss=1.21 (33%)`; metrics events carry step and total_steps. */
export function describeEvent(event: FineTuningJobEvent): string {
  const time = new Date(event.created_at * 1000).toISOString().slice(11, 19);
  const data = event.data as { step?: unknown; total_steps?: unknown } | undefined;
  const progress =
    typeof data?.step === "number" && typeof data.total_steps === "number" && data.total_steps > 0
      ? ` (${Math.floor((100 * data.step) / data.total_steps)}%)`
      : "";
  const level = event.level === "info" ? "" : `${event.level}: `;
  return `${time} ${level}${event.message}${progress}`;
}
