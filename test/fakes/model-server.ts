/**
 * A loopback file server for model downloads: plain files, Hugging Face's manifest and resolve
 * routes (for `hf:` URIs through node-llama-cpp's `endpoints` option), byte ranges (so downloads
 * resume), an optional bearer token, and interruptions: a connection cut or held at a chosen byte.
 * Every request is kept, so a test can prove a file was not fetched again.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface ServedRequest {
  method: string;
  /** The path without the query string. */
  path: string;
  range: string | undefined;
  authorization: string | undefined;
  /** This response was cut or held by `interrupt`, when `requests` had this many entries. */
  interruptedAt?: number;
  /** Every byte of this response was handed to the socket. */
  complete?: boolean;
}

/**
 * The ways a model URL goes wrong in the wild:
 * - redirect: 302 to `to` (two paths redirecting to each other make a loop);
 * - html: a web page with status 200 (a "download" link that is really a login or landing page);
 * - lying-length: says the file is `extraBytes` longer than it is, then closes after the real bytes;
 * - truncate: every response is cut at `atByte` (the connection drops there, each time);
 * - stall: every response sends its headers and the bytes before `atByte`, then nothing, forever.
 */
export type Misbehaviour =
  | { kind: "redirect"; to: string }
  | { kind: "html" }
  | { kind: "lying-length"; extraBytes: number }
  | { kind: "truncate"; atByte: number }
  | { kind: "stall"; atByte: number };

interface Interruption {
  path: string;
  atByte: number;
  how: "cut" | "hold";
  reached: () => void;
  released: Promise<void>;
}

export class FakeModelServer {
  readonly requests: ServedRequest[] = [];
  readonly #files = new Map<string, Buffer>();
  /** "user/repo" → tag (upper case) → file name in the repository. */
  readonly #manifests = new Map<string, Map<string, string>>();
  readonly #interruptions: Interruption[] = [];
  readonly #hanging = new Set<string>();
  /** path → what it does instead of serving a file (see `misbehave`). */
  readonly #misbehaviours = new Map<string, Misbehaviour>();
  #token: string | undefined;
  #basic: { header: string; path: string | undefined } | undefined;

  private constructor(
    private readonly server: Server,
    /** e.g. http://127.0.0.1:1234 (no trailing slash). */
    readonly url: string,
  ) {}

  static async start(): Promise<FakeModelServer> {
    let fake: FakeModelServer | undefined;
    const server = createServer((req, res) => void fake!.#handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    fake = new FakeModelServer(server, `http://127.0.0.1:${port}`);
    return fake;
  }

  /** Serves `bytes` at `path`, e.g. "/files/model.gguf". */
  file(path: string, bytes: Buffer): this {
    this.#files.set(path, bytes);
    return this;
  }

  /**
   * A Hugging Face repository "user/repo": each file at `/user/repo/resolve/main/<name>`, and a
   * manifest per tag (`hf:user/repo:TAG` asks `/v2/user/repo/manifests/TAG` which file is TAG).
   */
  huggingFace(repo: string, files: Record<string, Buffer>, tags: Record<string, string> = {}): this {
    for (const [name, bytes] of Object.entries(files)) this.file(`/${repo}/resolve/main/${name}`, bytes);
    this.#manifests.set(repo, new Map(Object.entries(tags).map(([tag, name]) => [tag.toUpperCase(), name])));
    return this;
  }

  /** From now on, answers 401 unless the request carries `Authorization: Bearer <token>`. */
  requireToken(token: string): this {
    this.#token = token;
    return this;
  }

  /**
   * The next ranged download of `path` that covers `atByte` sends the bytes before it, then either
   * drops the connection ("cut") or waits for `release()` ("hold"). node-llama-cpp's downloader
   * fetches data with Range requests; its first, range-less GET only reads the headers.
   */
  interrupt(path: string, atByte: number, how: "cut" | "hold"): { reached: Promise<void>; release: () => void } {
    let reached!: () => void;
    let release!: () => void;
    const reachedPromise = new Promise<void>((resolve) => (reached = resolve));
    const released = new Promise<void>((resolve) => (release = resolve));
    this.#interruptions.push({ path, atByte, how, reached, released });
    return { reached: reachedPromise, release };
  }

  /** Requests for `path` are accepted and never answered. */
  hang(path: string): this {
    this.#hanging.add(path);
    return this;
  }

  /** From now on, `path` misbehaves as `how` says (its file, if any, is what the lies are about). */
  misbehave(path: string, how: Misbehaviour): this {
    this.#misbehaviours.set(path, how);
    return this;
  }

  /** From now on, answers 401 for `path` (every path when not given) unless the request carries HTTP Basic credentials `user:password`. */
  requireBasic(user: string, password: string, path?: string): this {
    this.#basic = { header: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`, path };
    return this;
  }

  /** Requests for bodies of `path` (GETs with or without a range). */
  downloads(path: string): ServedRequest[] {
    return this.requests.filter((r) => r.method === "GET" && r.path === path);
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = decodeURIComponent(new URL(req.url ?? "/", this.url).pathname);
    const request: ServedRequest = { method: req.method ?? "GET", path, range: req.headers.range, authorization: req.headers.authorization };
    this.requests.push(request);
    if (this.#hanging.has(path)) return;
    if (this.#token !== undefined && request.authorization !== `Bearer ${this.#token}`) return this.#status(res, 401, "Unauthorized");
    if (this.#basic && (this.#basic.path ?? path) === path && request.authorization !== this.#basic.header) return this.#status(res, 401, "Unauthorized");
    const misbehaviour = this.#misbehaviours.get(path);
    if (misbehaviour) return this.#misbehave(req, res, misbehaviour, this.#files.get(path) ?? Buffer.alloc(0));

    const manifest = /^\/v2\/([^/]+\/[^/]+)\/manifests\/([^/]+)$/.exec(path);
    if (manifest) {
      const name = this.#manifests.get(manifest[1]!)?.get(manifest[2]!.toUpperCase());
      if (!name) return this.#status(res, 404, "Not Found");
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ ggufFile: { rfilename: name, size: this.#files.get(`/${manifest[1]}/resolve/main/${name}`)?.length } }));
      return;
    }

    const bytes = this.#files.get(path);
    if (!bytes) return this.#status(res, 404, "Not Found");
    const range = /^bytes=(\d+)-(\d*)$/.exec(request.range ?? "");
    const start = range ? Number(range[1]) : 0;
    const end = range && range[2] ? Math.min(Number(range[2]) + 1, bytes.length) : bytes.length;
    if (start >= bytes.length || start >= end) {
      res.writeHead(416, { "content-range": `bytes */${bytes.length}` });
      res.end();
      return;
    }
    const headers: Record<string, string | number> = {
      "accept-ranges": "bytes",
      "content-type": "application/octet-stream",
      "content-length": end - start,
      ...(range ? { "content-range": `bytes ${start}-${end - 1}/${bytes.length}` } : {}),
    };
    res.writeHead(range ? 206 : 200, headers);
    if (request.method === "HEAD") return void res.end();

    const index = range ? this.#interruptions.findIndex((i) => i.path === path && i.atByte >= start && i.atByte < end) : -1;
    if (index < 0) return void res.end(bytes.subarray(start, end), () => (request.complete = true));
    const [interruption] = this.#interruptions.splice(index, 1);

    await new Promise<void>((resolve) => res.write(bytes.subarray(start, interruption!.atByte), () => resolve()));
    request.interruptedAt = this.requests.length;
    interruption!.reached();
    if (interruption!.how === "cut") {
      res.socket?.destroy();
      return;
    }
    await interruption!.released;
    if (!res.destroyed) res.end(bytes.subarray(interruption!.atByte, end), () => (request.complete = true));
  }

  async #misbehave(req: IncomingMessage, res: ServerResponse, how: Misbehaviour, bytes: Buffer): Promise<void> {
    if (how.kind === "redirect") {
      res.writeHead(302, { location: how.to, "content-length": 0 });
      return void res.end();
    }
    if (how.kind === "html") {
      const page = Buffer.from("<!DOCTYPE html><html><head><title>Sign in</title></head><body>Please sign in to download.</body></html>");
      res.writeHead(200, { "content-type": "text/html; charset=utf-8", "content-length": page.length });
      return void res.end(req.method === "HEAD" ? undefined : page);
    }
    const claimed = bytes.length + (how.kind === "lying-length" ? how.extraBytes : 0);
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    const start = range ? Number(range[1]) : 0;
    const end = range && range[2] ? Number(range[2]) + 1 : claimed;
    res.writeHead(range ? 206 : 200, {
      "accept-ranges": "bytes",
      "content-type": "application/octet-stream",
      "content-length": end - start,
      ...(range ? { "content-range": `bytes ${start}-${end - 1}/${claimed}` } : {}),
    });
    if (req.method === "HEAD") return void res.end();
    const stopAt = how.kind === "lying-length" ? bytes.length : Math.min(how.atByte, bytes.length);
    if (start < stopAt) await new Promise<void>((resolve) => res.write(bytes.subarray(start, Math.min(end, stopAt)), () => resolve()));
    // A stall keeps the connection open and silent; the others drop it short of what they promised.
    if (how.kind !== "stall") res.socket?.destroy();
  }

  #status(res: ServerResponse, status: number, text: string): void {
    res.writeHead(status, text, { "content-type": "text/plain" });
    res.end(text);
  }
}
