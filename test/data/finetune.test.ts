import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { main } from "../../src/cli.ts";
import { FakeOpenAIFinetune, type FakeFinetuneOptions } from "../fakes/openai-finetune.ts";
import { captureIo } from "./helpers/capture-io.ts";
import { tempFolder } from "./helpers/fixtures.ts";

const example = (i: number) =>
  JSON.stringify({
    messages: [
      { role: "system", content: "Your name is Friend." },
      { role: "user", content: `Did you eat my sandwich number ${i}?` },
      { role: "assistant", content: "Define eat." },
    ],
  });

describe("friend finetune, end to end against a loopback fake of OpenAI with the real SDK", () => {
  let dir: ReturnType<typeof tempFolder>;
  let fake: FakeOpenAIFinetune | undefined;
  let trainingText: string;

  beforeEach(() => {
    dir = tempFolder();
    trainingText = `${Array.from({ length: 12 }, (_, i) => example(i)).join("\n")}\n`;
    writeFileSync(join(dir.path, "train.jsonl"), trainingText);
  });
  afterEach(async () => {
    await fake?.close();
    fake = undefined;
    dir.remove();
  });

  async function run(argv: string[], options: FakeFinetuneOptions, onOut?: (line: string, interrupt: () => void) => void) {
    fake ??= await FakeOpenAIFinetune.start(options);
    let interrupt = () => {};
    const captured = captureIo({
      cwd: dir.path,
      env: { OPENAI_API_KEY: "test-key", OPENAI_BASE_URL: fake.baseURL, FRIEND_POLL_MS: "1" },
      onOut: (line) => onOut?.(line, interrupt),
    });
    interrupt = captured.interrupt;
    const code = await main(argv, captured.io);
    return { code, out: captured.out, err: captured.err };
  }

  it("success: uploads, creates a supervised job, follows its events and prints the ft: model", async () => {
    const { code, out, err } = await run(["finetune", "--file", "train.jsonl", "--epochs", "3", "--suffix", "friends"], { outcome: "succeeded" });
    expect(err).toEqual([]);
    expect(code).toBe(0);

    const [file] = [...fake!.files.values()];
    expect(file).toMatchObject({ filename: "train.jsonl", purpose: "fine-tune", content: trainingText });
    const [job] = [...fake!.jobs.values()];
    expect(job!.request).toEqual({
      model: "gpt-3.5-turbo-0125",
      training_file: file!.id,
      suffix: "friends",
      method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 3 } } },
    });

    const modelId = `ft:gpt-3.5-turbo-0125:friend-test:friends:${job!.id.slice(-6)}`;
    expect(out).toContain("examples: 12");
    expect(out).toContain(`started job ${job!.id}; Ctrl-C detaches, \`friend finetune status ${job!.id}\` reattaches`);
    expect(out.filter((l) => l.startsWith("status: "))).toEqual(["status: queued", "status: running", "status: succeeded"]);
    // Every event once, oldest first, with progress from the metrics events.
    const events = out.filter((l) => /^\d\d:\d\d:\d\d /.test(l)).map((l) => l.slice(9));
    expect(events).toEqual([
      `Validating training file: ${file!.id}`,
      "Files validated, moving job to queued state",
      "Fine-tuning job started",
      "Step 1/3: training loss=2.00 (33%)",
      "Step 2/3: training loss=1.00 (66%)",
      "Step 3/3: training loss=0.67 (100%)",
      `New fine-tuned model created: ${modelId}`,
      "The job has successfully completed",
    ]);
    expect(out).toContain(`fine-tuned model: ${modelId}`);
    expect(out.at(-1)).toBe(`use it with OPENAI_MODEL=${modelId} (or rerun with --write-env)`);
  });

  it("--write-env sets OPENAI_MODEL in .env in place and keeps the other lines", async () => {
    const envPath = join(dir.path, ".env");
    writeFileSync(envPath, "# Friend settings\nDISCORD_TOKEN=abc\nOPENAI_MODEL=gpt-4o-mini\nLOG_LEVEL=info\n");
    const { code } = await run(["finetune", "--file", "train.jsonl", "--write-env"], { outcome: "succeeded" });
    expect(code).toBe(0);
    const [job] = [...fake!.jobs.values()];
    expect(readFileSync(envPath, "utf8")).toBe(
      `# Friend settings\nDISCORD_TOKEN=abc\nOPENAI_MODEL=ft:gpt-3.5-turbo-0125:friend-test:friends:${job!.id.slice(-6)}\nLOG_LEVEL=info\n`,
    );
  });

  it("--env-file picks the file to read the key from and to update", async () => {
    fake = await FakeOpenAIFinetune.start({ outcome: "succeeded", apiKey: "from-env-file" });
    writeFileSync(join(dir.path, "other.env"), "OPENAI_API_KEY=from-env-file\n");
    const captured = captureIo({ cwd: dir.path, env: { OPENAI_BASE_URL: fake.baseURL, FRIEND_POLL_MS: "1" } });
    const code = await main(["finetune", "--file", "train.jsonl", "--env-file", "other.env", "--write-env", "--model", "gpt-4o-mini-2024-07-18"], captured.io);
    expect(captured.err).toEqual([]);
    expect(code).toBe(0);
    expect(readFileSync(join(dir.path, "other.env"), "utf8")).toMatch(/^OPENAI_API_KEY=from-env-file\nOPENAI_MODEL=ft:gpt-4o-mini-2024-07-18:friend-test:friends:\w+\n$/);
  });

  it("failure: prints the job's error as one line and exits 1", async () => {
    const { code, out, err } = await run(["finetune", "--file", "train.jsonl"], { outcome: "failed" });
    expect(code).toBe(1);
    const [job] = [...fake!.jobs.values()];
    expect(out).toContain("status: failed");
    expect(out.some((l) => l.endsWith("error: Fine-tuning job failed: the training file has too few usable examples"))).toBe(true);
    expect(err).toEqual([`friend finetune: job ${job!.id} failed: The training file has too few usable examples. (invalid_training_file)`]);
  });

  it("a file OpenAI cannot process stops before any job is created", async () => {
    const { code, err } = await run(["finetune", "--file", "train.jsonl"], { outcome: "succeeded", fileStatus: "error" });
    expect(code).toBe(1);
    expect(err).toEqual([expect.stringMatching(/^friend finetune: OpenAI could not process .*train\.jsonl \(file file-\d+ is error: Invalid file format: line 3 is not JSON\)$/)]);
    expect(fake!.jobs.size).toBe(0);
  });

  it("Ctrl-C detaches without cancelling and says how to reattach; status reattaches", async () => {
    const detached = await run(["finetune", "--file", "train.jsonl"], { outcome: "succeeded" }, (line, interrupt) => {
      if (line === "status: running") interrupt();
    });
    const [job] = [...fake!.jobs.values()];
    expect(detached.code).toBe(130);
    expect(detached.out.at(-1)).toBe(`detached; job ${job!.id} keeps running. Reattach with: friend finetune status ${job!.id} (add --cancel to cancel it)`);
    expect(fake!.requests.filter((r) => r.endsWith("/cancel"))).toEqual([]);
    expect(job!.status).toBe("running");

    const reattached = await run(["finetune", "status", job!.id], { outcome: "succeeded" });
    expect(reattached.code).toBe(0);
    expect(reattached.out).toContain(`fine-tuned model: ft:gpt-3.5-turbo-0125:friend-test:friends:${job!.id.slice(-6)}`);
  });

  it("a real Ctrl-C (SIGINT) to bin/friend.js detaches with exit 130 and cancels nothing", async () => {
    fake = await FakeOpenAIFinetune.start({ outcome: "runs until cancelled" });
    const child = spawn(process.execPath, [fileURLToPath(new URL("../../bin/friend.js", import.meta.url)), "finetune", "--file", "train.jsonl"], {
      cwd: dir.path,
      env: { ...process.env, OPENAI_API_KEY: "test-key", OPENAI_BASE_URL: fake.baseURL, FRIEND_POLL_MS: "20" },
    });
    let stdout = "";
    let interrupted = false;
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      // Once: a second Ctrl-C is meant to kill outright.
      if (!interrupted && stdout.includes("status: running")) interrupted = child.kill("SIGINT");
    });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(stderr).toBe("");
    expect(code).toBe(130);
    expect(stdout).toMatch(/detached; job ftjob-\d+ keeps running\. Reattach with: friend finetune status ftjob-\d+ \(add --cancel to cancel it\)\n$/);
    expect(fake.requests.filter((r) => r.endsWith("/cancel"))).toEqual([]);
  }, 20_000);

  it("status --cancel cancels the job and follows it until it stops", async () => {
    const started = await run(["finetune", "--file", "train.jsonl"], { outcome: "runs until cancelled" }, (line, interrupt) => {
      if (line.includes("Step 2/3")) interrupt();
    });
    expect(started.code).toBe(130);
    const [job] = [...fake!.jobs.values()];

    const cancelled = await run(["finetune", "status", job!.id, "--cancel"], { outcome: "runs until cancelled" });
    expect(cancelled.err).toEqual([]);
    expect(cancelled.code).toBe(0);
    expect(fake!.requests).toContain(`POST /fine_tuning/jobs/${job!.id}/cancel`);
    expect(cancelled.out).toContain("status: cancelled");
    expect(cancelled.out.at(-1)).toBe(`job ${job!.id} cancelled`);
    expect(job!.status).toBe("cancelled");
  });

  it("a job cancelled by someone else is a failure for the follower", async () => {
    const started = await run(["finetune", "--file", "train.jsonl"], { outcome: "runs until cancelled" }, (line, interrupt) => {
      if (line === "status: running") interrupt();
    });
    expect(started.code).toBe(130);
    const [job] = [...fake!.jobs.values()];
    job!.status = "cancelled";
    const followed = await run(["finetune", "status", job!.id], { outcome: "runs until cancelled" });
    expect(followed.code).toBe(1);
    expect(followed.err).toEqual([`friend finetune status: job ${job!.id} was cancelled`]);
  });

  it("validates the file first: a bad line stops it before anything is uploaded", async () => {
    writeFileSync(join(dir.path, "train.jsonl"), `${trainingText}${JSON.stringify({ messages: [{ role: "narrator", content: "Meanwhile." }] })}\n{oops\n`);
    const { code, err } = await run(["finetune", "--file", "train.jsonl"], { outcome: "succeeded" });
    expect(code).toBe(1);
    expect(err).toEqual([
      expect.stringMatching(/^friend finetune: .*train\.jsonl:13: message 1 has role "narrator"; allowed: system, user, assistant, function \(and 1 more bad lines\)$/),
    ]);
    expect(fake!.requests).toEqual([]);
  });

  it("fewer than 10 examples is refused before upload", async () => {
    writeFileSync(join(dir.path, "train.jsonl"), `${example(1)}\n${example(2)}\n`);
    const { code, err } = await run(["finetune", "--file", "train.jsonl"], { outcome: "succeeded" });
    expect(code).toBe(1);
    expect(err).toEqual([expect.stringMatching(/train\.jsonl: 2 examples; OpenAI needs at least 10$/)]);
    expect(fake!.requests).toEqual([]);
  });

  it("a wrong API key is one line from the API, exit 1", async () => {
    fake = await FakeOpenAIFinetune.start({ outcome: "succeeded", apiKey: "the-right-key" });
    const { code, err } = await run(["finetune", "--file", "train.jsonl"], { outcome: "succeeded" });
    expect(code).toBe(1);
    expect(err).toEqual(["friend finetune: the API refused: 401 Incorrect API key provided"]);
  });

  it("an unreachable server names OPENAI_BASE_URL", async () => {
    const server = await FakeOpenAIFinetune.start({ outcome: "succeeded" });
    const deadUrl = server.baseURL;
    await server.close();
    const captured = captureIo({ cwd: dir.path, env: { OPENAI_API_KEY: "k", OPENAI_BASE_URL: deadUrl } });
    const code = await main(["finetune", "--file", "train.jsonl"], captured.io);
    expect(code).toBe(1);
    expect(captured.err).toEqual([expect.stringMatching(new RegExp(`^friend finetune: cannot reach ${deadUrl.replace(/[.]/g, "\\.")} \\(.*\\); check OPENAI_BASE_URL and the network$`))]);
  }, 20_000);

  it.each([
    [["finetune"], "friend finetune: --file is required"],
    [["finetune", "--file", "train.jsonl", "--model", "gpt-5"], 'friend finetune: --model must be gpt-3.5-turbo-0125 or gpt-4o-mini-2024-07-18, not "gpt-5"'],
    [["finetune", "--file", "train.jsonl", "--epochs", "0"], 'friend finetune: --epochs must be a whole number from 1 to 50, not "0"'],
    [["finetune", "--file", "train.jsonl", "--suffix", "my friends!"], 'friend finetune: --suffix must be 1-64 letters, digits, _ or -, not "my friends!"'],
    [["finetune", "--file", "train.jsonl", "--poll-ms", "soon"], 'friend finetune: --poll-ms must be a whole number from 1 to 3600000, not "soon"'],
    [["finetune", "status"], "friend finetune status: give the job id, e.g. friend finetune status ftjob-abc123"],
    [["finetune", "status", "a", "b"], 'friend finetune status: unexpected argument "b"'],
  ])("%j is a usage error: exit 2, one line", async (argv, message) => {
    const captured = captureIo({ cwd: dir.path, env: { OPENAI_API_KEY: "k", OPENAI_BASE_URL: "http://127.0.0.1:9/v1" } });
    expect(await main(argv, captured.io)).toBe(2);
    expect(captured.err).toEqual([message]);
  });

  it("no API key is a usage error that says where to put it", async () => {
    const captured = captureIo({ cwd: dir.path, env: {} });
    expect(await main(["finetune", "--file", "train.jsonl"], captured.io)).toBe(2);
    expect(captured.err).toEqual(["friend finetune: OPENAI_API_KEY is not set; put it in .env or the environment"]);
  });
});
