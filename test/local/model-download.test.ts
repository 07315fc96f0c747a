/**
 * Models and adapters by URL and by Hugging Face URI, downloaded with node-llama-cpp's own
 * downloader from a loopback server, then loaded by real llama.cpp: the designed reply, and the
 * adapter's ` Hey Rachel`, prove the downloaded files are the ones in use.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { BackendError } from "../../src/core/backend.ts";
import { LocalBackend, type LocalBackendOptions } from "../../src/backends/local.ts";
import { DownloadReport, formatBytes } from "../../src/backends/local/model-download.ts";
import { parseModelSource } from "../../src/core/model-source.ts";
import { FakeModelServer } from "../fakes/model-server.ts";
import { writeTinyModelSet, writeTinyScriptModel, type TinyModelSet } from "../gguf/tiny-models.ts";
import { capturingLogger, collect, persona, request, TEST_THREADS, turn } from "./helpers.ts";

/** ipull, inside node-llama-cpp, fetches in 5 MiB chunks and resumes at a chunk's start. */
const DOWNLOAD_CHUNK = 5 * 1024 * 1024;

let tiny: TinyModelSet;
let model: Buffer;
let adapter: Buffer;
/** A 6.8 MB copy of the script model (filler metadata): two chunks, so a download can resume mid-file. */
let padded: Buffer;
let server: FakeModelServer;
let root: string;
const backends: LocalBackend[] = [];

beforeAll(async () => {
  tiny = writeTinyModelSet();
  writeTinyScriptModel(join(tiny.dir, "padded.gguf"), { paddingBytes: 6_500_000 });
  model = readFileSync(tiny.model);
  adapter = readFileSync(tiny.adapter);
  padded = readFileSync(join(tiny.dir, "padded.gguf"));
  root = mkdtempSync(join(tmpdir(), "friend-downloads-"));
});

afterAll(() => {
  rmSync(tiny.dir, { recursive: true, force: true });
  rmSync(root, { recursive: true, force: true });
});

let testNumber = 0;
let dirs: { modelsDir: string; adaptersDir: string };

beforeEach(async () => {
  server = await FakeModelServer.start();
  server.file("/files/tiny-script.gguf", model).file("/files/tiny-lora.gguf", adapter).file("/files/padded.gguf", padded);
  server.huggingFace("friends/Tiny-GGUF", { "tiny.Q8_0.gguf": model, "adapters/tiny-lora.gguf": adapter }, { Q8_0: "tiny.Q8_0.gguf" });
  const dir = join(root, `test-${testNumber++}`);
  dirs = { modelsDir: join(dir, "models"), adaptersDir: join(dir, "adapters") };
});

afterEach(async () => {
  for (const b of backends.splice(0)) await b.close();
  await server.stop();
});

function backend(options: Partial<LocalBackendOptions> & { modelPath: string }): LocalBackend {
  const b = new LocalBackend({ threads: TEST_THREADS, gpuLayers: 0, contextSize: 512, sequences: 1, progressBar: false, ...dirs, ...options });
  backends.push(b);
  return b;
}

const hello = [turn("Alice", "hello there")];
/** With persona "Ross" the model's own line is ` (entering) Hey Ben!`; the adapter makes it ` Hey Rachel!`. */
const askRoss = (b: LocalBackend) => collect(b.generate(request("c1", [turn("Alice", "who is there?")], { persona: { ...persona, name: "Ross" }, maxTokens: 6 })));

describe("downloading a model and an adapter", () => {
  it("by plain URL: into models/ and adapters/, logged as it goes, then loaded with the adapter applied", async () => {
    const { logger, lines } = capturingLogger();
    const b = backend({ modelPath: `${server.url}/files/tiny-script.gguf`, loraPath: `${server.url}/files/tiny-lora.gguf`, logger });
    expect(b.describe()).toMatchObject({ model: "tiny-script.gguf", adapter: "tiny-lora.gguf", loaded: false });

    expect((await askRoss(b)).text).toBe("(entering) Hey Rachel!");
    expect((await collect(b.generate(request("c2", hello, { maxTokens: 6 })))).text).toBe("Oh, I don't know.");
    expect(readFileSync(join(dirs.modelsDir, "tiny-script.gguf")).equals(model)).toBe(true);
    expect(readFileSync(join(dirs.adaptersDir, "tiny-lora.gguf")).equals(adapter)).toBe(true);
    expect(b.describe()).toMatchObject({ loaded: true });
    expect(b.describe().progress).toBeUndefined();

    const progress = lines.filter((l) => l.msg === "downloading");
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.map((l) => l.percent as number)).toEqual([...progress.map((l) => l.percent as number)].sort((x, y) => x - y));
    expect(progress.at(-1)).toMatchObject({ percent: 100, totalBytes: adapter.length });
    expect(lines.filter((l) => l.msg === "downloaded").map((l) => l.source)).toEqual([`${server.url}/files/tiny-script.gguf`, `${server.url}/files/tiny-lora.gguf`]);
  });

  it("by hf: URI through a loopback endpoint (a quantization tag and a file path), then loaded", async () => {
    const b = backend({ modelPath: "hf:friends/Tiny-GGUF:Q8_0", loraPath: "hf:friends/Tiny-GGUF/adapters/tiny-lora.gguf", huggingFaceEndpoint: `${server.url}/` });
    expect(b.describe()).toMatchObject({ model: "hf:friends/Tiny-GGUF:Q8_0", adapter: "hf:friends/Tiny-GGUF/adapters/tiny-lora.gguf" });
    expect((await askRoss(b)).text).toBe("(entering) Hey Rachel!");
    expect(server.requests.map((r) => r.path)).toContain("/v2/friends/Tiny-GGUF/manifests/Q8_0");
    expect(server.downloads("/friends/Tiny-GGUF/resolve/main/tiny.Q8_0.gguf").length).toBeGreaterThan(0);
    expect(server.downloads("/friends/Tiny-GGUF/resolve/main/adapters/tiny-lora.gguf").length).toBeGreaterThan(0);
    // node-llama-cpp's file names, in the configured folders.
    expect(readdirSync(dirs.modelsDir).filter((f) => f.endsWith(".gguf"))).toHaveLength(1);
    expect(readdirSync(dirs.adaptersDir).filter((f) => f.endsWith(".gguf"))).toHaveLength(1);
  });

  it("a file already present is used as it is: not one request, for URLs or hf: URIs", async () => {
    // Two set-ups: node-llama-cpp takes any URL on the Hugging Face endpoint's host for a Hugging Face URL.
    for (const sources of [
      { modelPath: `${server.url}/files/tiny-script.gguf`, loraPath: `${server.url}/files/tiny-lora.gguf` },
      { modelPath: "hf:friends/Tiny-GGUF:Q8_0", loraPath: "hf:friends/Tiny-GGUF/adapters/tiny-lora.gguf", huggingFaceEndpoint: `${server.url}/` },
    ]) {
      await backend(sources).prepare();
      const before = server.requests.length;
      expect(before).toBeGreaterThan(0);
      const again = backend(sources);
      expect((await askRoss(again)).text).toBe("(entering) Hey Rachel!");
      expect(server.requests.slice(before)).toEqual([]);
    }
  });

  it("a download cut in the middle resumes from the last whole chunk, not from the start", async () => {
    const cut = server.interrupt("/files/padded.gguf", DOWNLOAD_CHUNK + 500_000, "cut");
    const b = backend({ modelPath: `${server.url}/files/padded.gguf` });
    const out = await collect(b.generate(request("c1", hello, { maxTokens: 6 })));
    await cut.reached;
    expect(out.text).toBe("Oh, I don't know.");
    expect(readFileSync(join(dirs.modelsDir, "padded.gguf")).equals(padded)).toBe(true);
    const afterCut = server.requests.slice(server.requests.find((r) => r.interruptedAt !== undefined)!.interruptedAt);
    // The cut chunk was asked for again from its start; the first chunk went over the wire once.
    expect(afterCut.some((r) => r.range?.startsWith(`bytes=${DOWNLOAD_CHUNK}-`))).toBe(true);
    expect(server.downloads("/files/padded.gguf").filter((r) => r.range?.startsWith("bytes=0-"))).toHaveLength(1);
  });

  it("a download stopped by a shutdown resumes where it stopped on the next start; progress shows meanwhile", async () => {
    const held = server.interrupt("/files/padded.gguf", DOWNLOAD_CHUNK + 500_000, "hold");
    const first = backend({ modelPath: `${server.url}/files/padded.gguf` });
    const loading = first.prepare();
    loading.catch(() => undefined);
    await held.reached;
    // The first chunk arrives whole, and the downloader notes it in its partial file.
    await waitFor(() => savedChunks(join(dirs.modelsDir, "padded.gguf.ipull"), padded.length).join() === "2,1", "the first chunk to be saved");
    expect(first.describe().progress).toMatchObject({ step: "downloading", text: expect.stringMatching(/^downloading \d+% of padded\.gguf \(\d+\.\d MB of 6\.8 MB\)$/) });
    expect(Number(/(\d+)%/.exec(first.describe().progress!.text)![1])).toBeGreaterThanOrEqual(84); // 5.7 of 6.8 MB

    await first.close();
    await expect(loading).rejects.toMatchObject({ kind: "aborted", message: expect.stringMatching(/^Stopped downloading the local model http:\/\/127\.0\.0\.1:\d+\/files\/padded\.gguf: The local backend is closing/) });
    held.release();
    expect(existsSync(join(dirs.modelsDir, "padded.gguf"))).toBe(false);

    const before = server.requests.length;
    const second = backend({ modelPath: `${server.url}/files/padded.gguf` });
    expect((await collect(second.generate(request("c1", hello, { maxTokens: 6 })))).text).toBe("Oh, I don't know.");
    // Only the chunk that was held is fetched again.
    const ranged = server.requests.slice(before).filter((r) => r.method === "GET" && r.range !== undefined);
    expect(ranged.map((r) => r.range)).toEqual([`bytes=${DOWNLOAD_CHUNK}-${padded.length - 1}`]);
    expect(readFileSync(join(dirs.modelsDir, "padded.gguf")).equals(padded)).toBe(true);
  });
});

describe("download failures", () => {
  it("a 404 names the URL and the reason, and the next attempt tries again", async () => {
    const url = `${server.url}/files/later.gguf`;
    const b = backend({ modelPath: url });
    await expect(b.prepare()).rejects.toMatchObject({
      kind: "load",
      message: `Cannot download the local model ${url} into ${dirs.modelsDir}/: the server answered 404 Not Found`,
    });
    expect(b.describe().progress).toBeUndefined();
    server.file("/files/later.gguf", model);
    await b.prepare();
    expect((await collect(b.generate(request("c1", hello, { maxTokens: 6 })))).text).toBe("Oh, I don't know.");
  });

  it("an unknown hf: quantization names the URI", async () => {
    const b = backend({ modelPath: "hf:friends/Tiny-GGUF:Q2_K", huggingFaceEndpoint: `${server.url}/` });
    await expect(b.prepare()).rejects.toThrow(/^Cannot download the local model hf:friends\/Tiny-GGUF:Q2_K into .*: Cannot get quantization "Q2_K" for model "hf:friends\/Tiny-GGUF" or it does not exist/);
  });

  it("a gated repository: HF_TOKEN is sent, a wrong one is a clear 401, and neither reaches the log", async () => {
    const token = "hf_TestTokenThatMustNeverBeLogged123";
    server.requireToken(token);
    const wrong = capturingLogger();
    const refused = backend({ modelPath: "hf:friends/Tiny-GGUF:Q8_0", huggingFaceEndpoint: `${server.url}/`, huggingFaceToken: "hf_WrongTokenNeverLogged456", logger: wrong.logger });
    await expect(refused.prepare()).rejects.toThrow(/401 Unauthorized.*set HF_TOKEN to a token that has access/);
    expect(JSON.stringify(wrong.lines)).not.toContain("hf_WrongTokenNeverLogged456");

    const right = capturingLogger();
    const b = backend({ modelPath: "hf:friends/Tiny-GGUF:Q8_0", huggingFaceEndpoint: `${server.url}/`, huggingFaceToken: token, logger: right.logger });
    await b.prepare();
    expect(server.requests.some((r) => r.authorization === `Bearer ${token}`)).toBe(true);
    expect(JSON.stringify(right.lines)).not.toContain(token);
  });

  it("a server that never answers fails after the stall time, naming the URL", async () => {
    server.hang("/files/silent.gguf");
    const url = `${server.url}/files/silent.gguf`;
    const b = backend({ modelPath: url, downloadStallMs: 300 });
    await expect(b.prepare()).rejects.toMatchObject({
      kind: "load",
      message: `Cannot download the local model ${url} into ${dirs.modelsDir}/: nothing arrived for 0.3 s (is the address right, and the server reachable?)`,
    });
  });

  it("a URL's query string (a signed URL's signature) is never logged or shown", async () => {
    const { logger, lines } = capturingLogger();
    const b = backend({ modelPath: `${server.url}/files/tiny-script.gguf?X-Signature=SuperSecretSignature`, logger });
    await b.prepare();
    expect(b.describe().model).toBe("tiny-script.gguf");
    expect(JSON.stringify(lines)).not.toContain("SuperSecretSignature");
    const missing = backend({ modelPath: `${server.url}/files/none.gguf?X-Signature=SuperSecretSignature`, logger });
    const err = (await missing.prepare().catch((e: unknown) => e)) as BackendError;
    expect(err.message).toMatch(/none\.gguf into .*404/);
    expect(err.message).not.toContain("SuperSecretSignature");
    expect(JSON.stringify(lines)).not.toContain("SuperSecretSignature");
  });

  it("a damaged download says where it came from and how to fetch it again", async () => {
    server.file("/files/short.gguf", model.subarray(0, 5000));
    const url = `${server.url}/files/short.gguf`;
    const b = backend({ modelPath: url });
    await expect(b.prepare()).rejects.toThrow(`It was downloaded from ${url}; delete ${join(dirs.modelsDir, "short.gguf")} and Friend downloads it again.`);
  });
});

describe("model URLs that can never work: a clear reason, in bounded time, with nothing unhandled", () => {
  /** Every rejection nobody handled while a test ran (node-llama-cpp's downloader can leave one: `TypeError: terminated`). */
  const unhandled: unknown[] = [];
  const record = (reason: unknown): void => void unhandled.push(reason);
  beforeEach(() => void process.on("unhandledRejection", record));
  afterEach(async () => {
    // A late rejection from a stopped transfer arrives after its error; give it the time to.
    await new Promise((r) => setTimeout(r, 300));
    process.off("unhandledRejection", record);
    expect(unhandled.splice(0).map(String)).toEqual([]);
  });

  it.each<[string, (s: FakeModelServer) => string, RegExp]>([
    [
      "a redirect loop fails at once, naming the loop",
      (s) => (s.misbehave("/a/model.gguf", { kind: "redirect", to: "/b/model.gguf" }).misbehave("/b/model.gguf", { kind: "redirect", to: "/a/model.gguf" }), "/a/model.gguf"),
      /: the server redirects in a loop \(http:\/\/127\.0\.0\.1:\d+\/a\/model\.gguf → http:\/\/127\.0\.0\.1:\d+\/b\/model\.gguf → http:\/\/127\.0\.0\.1:\d+\/a\/model\.gguf\)$/,
    ],
    [
      "a chain of more than 10 redirects fails after following 10",
      (s) => {
        for (let i = 0; i < 12; i++) s.misbehave(`/hop${i}/model.gguf`, { kind: "redirect", to: `/hop${i + 1}/model.gguf` });
        return "/hop0/model.gguf";
      },
      /: the server redirected more than 10 times \(last to http:\/\/127\.0\.0\.1:\d+\/hop11\/model\.gguf\)$/,
    ],
    ["a web page instead of the file", (s) => (s.misbehave("/page/model.gguf", { kind: "html" }), "/page/model.gguf"), /: the server sent a web page \(text\/html\), not a GGUF file; give the file's direct download link$/],
    [
      "a file that is not GGUF",
      (s) => (s.file("/zip/model.gguf", Buffer.from("PK\u0003\u0004 a zip archive")), "/zip/model.gguf"),
      /: the server sent something that is not a GGUF file \(it starts with "PK\\u0003\\u0004", not "GGUF"\)$/,
    ],
    [
      "a content-length that claims more than there is",
      (s) => (s.file("/lie/model.gguf", model).misbehave("/lie/model.gguf", { kind: "lying-length", extraBytes: 100_000 }), "/lie/model.gguf"),
      /: the transfer broke off \d+ times? and never got past 280\.4 KB of the 380\.4 KB the server announced \(a truncated file on the server, or a content-length that is wrong\)$/,
    ],
    [
      "a body cut at the same byte every time",
      (s) => (s.file("/cut/model.gguf", model).misbehave("/cut/model.gguf", { kind: "truncate", atByte: 100_000 }), "/cut/model.gguf"),
      /: the transfer broke off \d+ times? and never got past 100\.0 KB of the 280\.4 KB the server announced/,
    ],
    [
      "a body that stops arriving",
      (s) => (s.file("/stall/model.gguf", model).misbehave("/stall/model.gguf", { kind: "stall", atByte: 100_000 }), "/stall/model.gguf"),
      /: the transfer stopped at 100\.0 KB of the 280\.4 KB the server announced: nothing more arrived for 1 s; the next attempt resumes from what arrived$/,
    ],
  ])("%s", async (_name, arrange, reason) => {
    const url = `${server.url}${arrange(server)}`;
    const started = Date.now();
    const err = (await backend({ modelPath: url, downloadStallMs: 1000, downloadTimeoutMs: 20_000 }).prepare().catch((e: unknown) => e)) as BackendError;
    expect(err).toBeInstanceOf(BackendError);
    expect(err.kind).toBe("load");
    expect(err.message.startsWith(`Cannot download the local model ${url} into ${dirs.modelsDir}/: `)).toBe(true);
    expect(err.message).toMatch(reason);
    // Well inside the downloader's own 13 minutes of retries; far from a bound on speed.
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(server.requests.length).toBeLessThan(30);
    // At most 10 redirects followed: 11 requests down the chain, none after it.
    if (url.includes("/hop0/")) expect(server.requests.map((r) => r.path)).toEqual(Array.from({ length: 11 }, (_, i) => `/hop${i}/model.gguf`));
  });

  it("a server that refuses connections fails at once with the network's reason", async () => {
    const gone = await FakeModelServer.start();
    await gone.stop();
    const url = `${gone.url}/files/model.gguf`;
    await expect(backend({ modelPath: url, downloadStallMs: 20_000 }).prepare()).rejects.toThrow(
      `Cannot download the local model ${url} into ${dirs.modelsDir}/: cannot reach ${url}: ECONNREFUSED`,
    );
  });

  it("the whole download's deadline names the setting and keeps what arrived", async () => {
    server.file("/slow/model.gguf", model).misbehave("/slow/model.gguf", { kind: "stall", atByte: 100_000 });
    const url = `${server.url}/slow/model.gguf`;
    await expect(backend({ modelPath: url, downloadStallMs: 10_000, downloadTimeoutMs: 500 }).prepare()).rejects.toThrow(
      `Cannot download the local model ${url} into ${dirs.modelsDir}/: it took longer than 0.5 s (LLAMA_DOWNLOAD_TIMEOUT_S), with 100.0 KB of the 280.4 KB the server announced; the next attempt resumes from what arrived`,
    );
  });

  it("credentials in the URL are sent as Basic authorization, and never logged or shown", async () => {
    server.requireBasic("reader", "pa:ss word");
    const { logger, lines } = capturingLogger();
    const b = backend({ modelPath: `${server.url.replace("http://", "http://reader:pa%3Ass%20word@")}/files/tiny-script.gguf`, logger });
    await b.prepare();
    expect(b.describe().model).toBe("tiny-script.gguf");
    expect(server.downloads("/files/tiny-script.gguf").length).toBeGreaterThan(0);
    expect(server.downloads("/files/tiny-script.gguf").every((r) => r.authorization === `Basic ${Buffer.from("reader:pa:ss word").toString("base64")}`)).toBe(true);
    expect(JSON.stringify(lines)).not.toMatch(/pa%3Ass|pa:ss|cGE6c3M/);

    const wrong = backend({ modelPath: `${server.url.replace("http://", "http://reader:WrongSecret@")}/files/tiny-lora.gguf`, logger });
    const err = (await wrong.prepare().catch((e: unknown) => e)) as BackendError;
    expect(err.message).toBe(`Cannot download the local model ${server.url}/files/tiny-lora.gguf into ${dirs.modelsDir}/: the server answered 401 Unauthorized (the user name and password in the URL were refused)`);
    expect(JSON.stringify(lines)).not.toContain("WrongSecret");
  });

  it("credentials are not sent on to another origin a redirect points at", async () => {
    const other = await FakeModelServer.start();
    try {
      other.file("/files/tiny-script.gguf", model);
      server.misbehave("/away/tiny-script.gguf", { kind: "redirect", to: `${other.url}/files/tiny-script.gguf` });
      await backend({ modelPath: `${server.url.replace("http://", "http://reader:secret@")}/away/tiny-script.gguf` }).prepare();
      expect(server.requests.find((r) => r.path === "/away/tiny-script.gguf")?.authorization).toMatch(/^Basic /);
      expect(other.requests.length).toBeGreaterThan(0);
      expect(other.requests.every((r) => r.authorization === undefined)).toBe(true);
    } finally {
      await other.stop();
    }
  });
});

describe("progress reports", () => {
  const source = parseModelSource("hf:TheBloke/Llama-2-7B-GGUF:Q4_K_M");
  const total = 4_081_004_224;
  const at = (percent: number) => ({ downloadedBytes: Math.round((total * percent) / 100), totalBytes: total });

  it("logs a line every 5 percent when there is no terminal, and says where it is for /status", () => {
    const { logger, lines } = capturingLogger();
    const report = new DownloadReport(source, logger, undefined);
    expect(report.text).toBe("downloading hf:TheBloke/Llama-2-7B-GGUF:Q4_K_M");
    for (let percent = 0; percent <= 100; percent += 0.5) report.update(at(percent));
    expect(lines.filter((l) => l.msg === "downloading").map((l) => l.percent)).toEqual(Array.from({ length: 21 }, (_, i) => i * 5));
    report.update(at(37.2));
    expect(report.text).toBe("downloading 37% of hf:TheBloke/Llama-2-7B-GGUF:Q4_K_M (1.5 GB of 4.1 GB)");
  });

  it("draws a bar on a terminal instead of logging, redrawn only when the percentage changes, ended by a newline", () => {
    const { logger, lines } = capturingLogger();
    let drawn = "";
    const terminal = new Writable({ write: (chunk: Buffer, _e, done) => ((drawn += chunk.toString()), done()) });
    const report = new DownloadReport(source, logger, terminal);
    for (let percent = 0; percent <= 100; percent += 0.25) report.update(at(percent));
    report.finish("models/x.gguf");
    const frames = drawn.split("\r").filter(Boolean);
    expect(frames).toHaveLength(101);
    expect(frames[50]).toBe(`[${"#".repeat(15)}${" ".repeat(15)}] downloading 50% of hf:TheBloke/Llama-2-7B-GGUF:Q4_K_M (2.0 GB of 4.1 GB)`);
    expect(drawn.endsWith("\n")).toBe(true);
    expect(lines.map((l) => l.msg)).toEqual(["downloaded"]);
  });

  it.each([
    [0, "0 B"],
    [999, "999 B"],
    [280_352, "280.4 KB"],
    [6_780_384, "6.8 MB"],
    [4_081_004_224, "4.1 GB"],
  ])("formatBytes(%d) is %s", (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});

/**
 * The chunk states node-llama-cpp's downloader (ipull) saved at the end of a partial file:
 * 0 not started, 1 in progress, 2 complete. Empty while nothing is saved.
 */
function savedChunks(partialFile: string, fileSize: number): number[] {
  try {
    return (JSON.parse(readFileSync(partialFile).subarray(fileSize).toString("utf8")) as { chunks: number[] }).chunks;
  } catch {
    return [];
  }
}

async function waitFor(check: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
