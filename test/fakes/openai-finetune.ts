import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A loopback fake of OpenAI's files and fine-tuning endpoints, enough for the real `openai`
 * SDK to upload a file, create a supervised job, follow its events and cancel it.
 * Each `GET /fine_tuning/jobs/:id` moves the job one step along its script.
 */
export type FakeJobOutcome = "succeeded" | "failed" | "runs until cancelled";

export interface FakeFinetuneOptions {
  outcome: FakeJobOutcome;
  /** `error` makes file processing fail. */
  fileStatus?: "processed" | "error";
  apiKey?: string;
}

export interface FakeFile {
  id: string;
  filename: string;
  purpose: string;
  content: string;
  /** Retrievals left before the file reads as processed. */
  pendingPolls: number;
}

export interface FakeJob {
  id: string;
  model: string;
  trainingFile: string;
  suffix: string | null;
  /** The request body as sent, to check the `method` shape. */
  request: Record<string, unknown>;
  status: "validating_files" | "queued" | "running" | "succeeded" | "failed" | "cancelled";
  step: number;
  events: { id: string; created_at: number; level: "info" | "warn" | "error"; message: string; object: "fine_tuning.job.event"; type: "message" | "metrics"; data?: unknown }[];
}

const TOTAL_STEPS = 3;

export class FakeOpenAIFinetune {
  readonly files = new Map<string, FakeFile>();
  readonly jobs = new Map<string, FakeJob>();
  /** Every request as `METHOD /path`, in order. */
  readonly requests: string[] = [];
  private clock = 1_700_000_000;
  private nextId = 1;

  private constructor(
    private readonly server: Server,
    readonly baseURL: string,
    private readonly options: FakeFinetuneOptions,
  ) {}

  static async start(options: FakeFinetuneOptions): Promise<FakeOpenAIFinetune> {
    let fake: FakeOpenAIFinetune | undefined;
    const server = createServer((req, res) => {
      fake!.handle(req, res).catch((err: Error) => send(res, 500, { error: { message: err.message, type: "server_error" } }));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    fake = new FakeOpenAIFinetune(server, `http://127.0.0.1:${port}/v1`, options);
    return fake;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://fake");
    const path = url.pathname.replace(/^\/v1/, "");
    this.requests.push(`${req.method} ${path}`);
    const body = await readBody(req);
    if (req.headers.authorization !== `Bearer ${this.options.apiKey ?? "test-key"}`) {
      return send(res, 401, { error: { message: "Incorrect API key provided", type: "invalid_request_error", code: "invalid_api_key" } });
    }

    let match: RegExpExecArray | null;
    if (req.method === "POST" && path === "/files") return this.uploadFile(req, body, res);
    if (req.method === "GET" && (match = /^\/files\/([^/]+)$/.exec(path))) return this.retrieveFile(match[1]!, res);
    if (req.method === "POST" && path === "/fine_tuning/jobs") return this.createJob(JSON.parse(body.toString("utf8")), res);
    if (req.method === "GET" && (match = /^\/fine_tuning\/jobs\/([^/]+)$/.exec(path))) return this.retrieveJob(match[1]!, res);
    if (req.method === "GET" && (match = /^\/fine_tuning\/jobs\/([^/]+)\/events$/.exec(path))) return this.listEvents(match[1]!, url, res);
    if (req.method === "POST" && (match = /^\/fine_tuning\/jobs\/([^/]+)\/cancel$/.exec(path))) return this.cancelJob(match[1]!, res);
    return send(res, 404, { error: { message: `no route ${req.method} ${path}`, type: "invalid_request_error" } });
  }

  private async uploadFile(req: IncomingMessage, body: Buffer, res: ServerResponse): Promise<void> {
    // The WHATWG Request parses multipart bodies, so the fake reads what the SDK really sent.
    const form = await new Request("http://fake/", { method: "POST", headers: { "content-type": req.headers["content-type"] ?? "" }, body }).formData();
    const file = form.get("file");
    if (!(file instanceof File)) return send(res, 400, { error: { message: "file is required", type: "invalid_request_error" } });
    const stored: FakeFile = { id: this.id("file"), filename: file.name, purpose: String(form.get("purpose")), content: await file.text(), pendingPolls: 1 };
    this.files.set(stored.id, stored);
    send(res, 200, this.fileObject(stored, "uploaded"));
  }

  private retrieveFile(id: string, res: ServerResponse): void {
    const file = this.files.get(id);
    if (!file) return send(res, 404, { error: { message: `No such File object: ${id}`, type: "invalid_request_error" } });
    const status = file.pendingPolls-- > 0 ? "uploaded" : (this.options.fileStatus ?? "processed");
    send(res, 200, this.fileObject(file, status));
  }

  private createJob(request: Record<string, unknown>, res: ServerResponse): void {
    const trainingFile = String(request.training_file);
    const method = request.method as { type?: string; supervised?: { hyperparameters?: { n_epochs?: unknown } } } | undefined;
    if (!this.files.has(trainingFile)) return send(res, 400, { error: { message: `invalid training_file: ${trainingFile}`, type: "invalid_request_error" } });
    if (request.hyperparameters !== undefined || method?.type !== "supervised") {
      return send(res, 400, { error: { message: "use method.supervised.hyperparameters", type: "invalid_request_error" } });
    }
    const job: FakeJob = {
      id: this.id("ftjob"),
      model: String(request.model),
      trainingFile,
      suffix: typeof request.suffix === "string" ? request.suffix : null,
      request,
      status: "validating_files",
      step: 0,
      events: [],
    };
    this.jobs.set(job.id, job);
    this.event(job, `Validating training file: ${trainingFile}`);
    send(res, 200, this.jobObject(job));
  }

  private retrieveJob(id: string, res: ServerResponse): void {
    const job = this.jobs.get(id);
    if (!job) return send(res, 404, { error: { message: `Could not find fine-tune: ${id}`, type: "invalid_request_error" } });
    this.advance(job);
    send(res, 200, this.jobObject(job));
  }

  private listEvents(id: string, url: URL, res: ServerResponse): void {
    const job = this.jobs.get(id);
    if (!job) return send(res, 404, { error: { message: `Could not find fine-tune: ${id}`, type: "invalid_request_error" } });
    const limit = Number(url.searchParams.get("limit") ?? 20);
    // Newest first, like the real API.
    send(res, 200, { object: "list", data: [...job.events].reverse().slice(0, limit), has_more: job.events.length > limit });
  }

  private cancelJob(id: string, res: ServerResponse): void {
    const job = this.jobs.get(id);
    if (!job) return send(res, 404, { error: { message: `Could not find fine-tune: ${id}`, type: "invalid_request_error" } });
    if (job.status === "succeeded" || job.status === "failed" || job.status === "cancelled") {
      return send(res, 400, { error: { message: `Job has already completed: ${id}`, type: "invalid_request_error" } });
    }
    job.status = "cancelled";
    this.event(job, "Fine-tuning job cancelled");
    send(res, 200, this.jobObject(job));
  }

  /** validating_files → queued → running (one metrics event per poll) → the outcome. */
  private advance(job: FakeJob): void {
    if (job.status === "validating_files") {
      job.status = "queued";
      this.event(job, "Files validated, moving job to queued state");
    } else if (job.status === "queued") {
      job.status = "running";
      this.event(job, `Fine-tuning job started`);
    } else if (job.status === "running") {
      if (job.step < TOTAL_STEPS || this.options.outcome === "runs until cancelled") {
        job.step++;
        this.event(job, `Step ${job.step}/${TOTAL_STEPS}: training loss=${(2 / job.step).toFixed(2)}`, {
          type: "metrics",
          data: { step: job.step, total_steps: TOTAL_STEPS, train_loss: 2 / job.step },
        });
      } else if (this.options.outcome === "failed") {
        job.status = "failed";
        this.event(job, "Fine-tuning job failed: the training file has too few usable examples", { level: "error" });
      } else {
        job.status = "succeeded";
        this.event(job, `New fine-tuned model created: ${this.modelId(job)}`);
        this.event(job, "The job has successfully completed");
      }
    }
  }

  private modelId(job: FakeJob): string {
    return `ft:${job.model}:friend-test:${job.suffix ?? ""}:${job.id.slice(-6)}`;
  }

  private event(job: FakeJob, message: string, extra: { type?: "message" | "metrics"; level?: "info" | "error"; data?: unknown } = {}): void {
    job.events.push({
      id: this.id("ftevent"),
      created_at: this.clock++,
      level: extra.level ?? "info",
      message,
      object: "fine_tuning.job.event",
      type: extra.type ?? "message",
      ...(extra.data === undefined ? {} : { data: extra.data }),
    });
  }

  private fileObject(file: FakeFile, status: string) {
    return { id: file.id, object: "file", bytes: Buffer.byteLength(file.content), created_at: this.clock, filename: file.filename, purpose: file.purpose, status, status_details: status === "error" ? "Invalid file format: line 3 is not JSON" : null };
  }

  private jobObject(job: FakeJob) {
    const method = job.request.method as { supervised?: { hyperparameters?: { n_epochs?: unknown } } };
    return {
      id: job.id,
      object: "fine_tuning.job",
      created_at: this.clock,
      model: job.model,
      training_file: job.trainingFile,
      validation_file: null,
      status: job.status,
      fine_tuned_model: job.status === "succeeded" ? this.modelId(job) : null,
      finished_at: ["succeeded", "failed", "cancelled"].includes(job.status) ? this.clock : null,
      error: job.status === "failed" ? { code: "invalid_training_file", message: "The training file has too few usable examples.", param: "training_file" } : null,
      hyperparameters: { n_epochs: method?.supervised?.hyperparameters?.n_epochs ?? "auto", batch_size: "auto", learning_rate_multiplier: "auto" },
      method: job.request.method,
      organization_id: "org-friend-test",
      result_files: [],
      seed: 1,
      trained_tokens: job.status === "succeeded" ? 12_345 : null,
    };
  }

  private id(prefix: string): string {
    return `${prefix}-${String(this.nextId++).padStart(6, "0")}`;
  }
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}
