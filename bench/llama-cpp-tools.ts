/**
 * llama.cpp's own benchmark tools (`llama-bench`, `llama-batched-bench`), built once into
 * bench/.cache from the source node-llama-cpp ships (its `llama/gitRelease.bundle`, cloned by
 * `node-llama-cpp source download`, offline) with the cmake options of Friend's native build, so the
 * comparison is the same code and the same compiler flags with and without Friend around it.
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { LLAMA_CPP_SOURCE_DIR as LLAMA_CPP_SOURCE, NATIVE_CMAKE_OPTIONS } from "../src/backends/local/llama-build.ts";

const CACHE = resolve(import.meta.dirname, ".cache");

/**
 * What node-llama-cpp adds to every build it makes (compileLLamaCpp.js), so the tools match the
 * addon: no network libraries, no Metal, no ccache, position-independent shared libraries.
 */
const NODE_LLAMA_CPP_BUILD_OPTIONS: Record<string, string> = {
  CMAKE_BUILD_TYPE: "Release",
  BUILD_SHARED_LIBS: "ON",
  CMAKE_POSITION_INDEPENDENT_CODE: "ON",
  GGML_BUILD_NUMBER: "1",
  GGML_METAL: "OFF",
  GGML_CCACHE: "OFF",
  LLAMA_CURL: "OFF",
  LLAMA_HTTPLIB: "OFF",
  LLAMA_OPENSSL: "OFF",
  LLAMA_BUILD_BORINGSSL: "OFF",
  LLAMA_BUILD_TESTS: "OFF",
  LLAMA_BUILD_EXAMPLES: "OFF",
  LLAMA_BUILD_SERVER: "OFF",
  LLAMA_BUILD_TOOLS: "ON",
};

export interface LlamaTools {
  dir: string;
  bench: string;
  batchedBench: string;
  cmakeOptions: Record<string, string>;
}

/** Builds the tools for `cmakeOptions` unless already built; returns their paths. */
export function ensureLlamaTools(cmakeOptions: Readonly<Record<string, string>> = NATIVE_CMAKE_OPTIONS, log = console.error): LlamaTools {
  ensureSource(log);
  const options = { ...NODE_LLAMA_CPP_BUILD_OPTIONS, ...cmakeOptions };
  const key = createHash("sha1").update(JSON.stringify(Object.entries(options).sort())).digest("hex").slice(0, 10);
  const dir = join(CACHE, `llama.cpp-tools-${key}`);
  const tools: LlamaTools = { dir, bench: join(dir, "bin", "llama-bench"), batchedBench: join(dir, "bin", "llama-batched-bench"), cmakeOptions: { ...cmakeOptions } };
  if (existsSync(tools.bench) && existsSync(tools.batchedBench)) return tools;

  mkdirSync(dir, { recursive: true });
  log(`building llama-bench and llama-batched-bench (${Object.entries(cmakeOptions).map(([k, v]) => `${k}=${v}`).join(" ")}) in ${dir}; this takes minutes`);
  const started = Date.now();
  run("cmake", ["-S", LLAMA_CPP_SOURCE, "-B", dir, "-G", "Ninja", ...Object.entries(options).map(([k, v]) => `-D${k}=${v}`)], log);
  run("cmake", ["--build", dir, "--target", "llama-bench", "llama-batched-bench", "-j", String(availableParallelism())], log);
  log(`built the llama.cpp tools in ${Math.round((Date.now() - started) / 1000)} s`);
  return tools;
}

/** Clones the bundled llama.cpp source into node-llama-cpp's folder (no network: it comes from the bundle). */
function ensureSource(log: (line: string) => void): void {
  if (existsSync(join(LLAMA_CPP_SOURCE, "CMakeLists.txt"))) return;
  log("cloning llama.cpp from node-llama-cpp's bundled release (no network needed)");
  run("npx", ["--no", "node-llama-cpp", "source", "download", "--skipBuild", "--gpu", "false", "--noUsageExample"], log);
}

function run(command: string, args: string[], log: (line: string) => void): void {
  const result = spawnSync(command, args, { encoding: "utf8", maxBuffer: 64 * 2 ** 20 });
  if (result.status !== 0) {
    log(result.stdout.slice(-4000) + result.stderr.slice(-4000));
    throw new Error(`${command} ${args.slice(0, 3).join(" ")}… failed (exit ${result.status})`);
  }
}

export interface ToolRun<T> {
  result: T;
  /** The process's peak resident memory (VmHWM), sampled while it ran. */
  peakRssMiB: number;
  /** Share of the CPUs that other processes used while it ran (a run with much of it is suspect). */
  othersBusy: number;
}

/** CPU ticks: all CPUs' busy and total (/proc/stat), or one process's user+system (/proc/PID/stat). */
function systemTicks(): { busy: number; total: number } {
  const cpu = readFileSync("/proc/stat", "utf8").split("\n")[0]!.split(/\s+/).slice(1).map(Number);
  const total = cpu.reduce((a, b) => a + b, 0);
  return { busy: total - cpu[3]! - (cpu[4] ?? 0), total };
}
function processTicks(pid: number): number | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return Number(fields[11]) + Number(fields[12]); // utime, stime
  } catch {
    return undefined;
  }
}

/**
 * Samples a child process while it runs: its peak memory, and how much of the CPUs everything
 * else used meanwhile. Call the returned function when it has exited.
 */
export function watchProcess(pid: number): () => { peakRssMiB: number; othersBusy: number } {
  const start = systemTicks();
  let peakKiB = 0;
  let childTicks = 0;
  const sample = (): void => {
    childTicks = processTicks(pid) ?? childTicks;
    try {
      const hwm = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
      if (hwm) peakKiB = Math.max(peakKiB, Number(hwm[1]));
    } catch {
      // exited between samples
    }
  };
  const timer = setInterval(sample, 100);
  return () => {
    clearInterval(timer);
    const end = systemTicks();
    const total = end.total - start.total;
    const others = total === 0 ? 0 : Math.max(0, end.busy - start.busy - childTicks) / total;
    return { peakRssMiB: Math.round(peakKiB / 1024), othersBusy: Math.round(others * 100) / 100 };
  };
}

/** Runs a tool, sampling its peak memory; rejects with its output on failure. */
function runTool(path: string, args: string[]): Promise<ToolRun<string>> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(path, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    const stop = watchProcess(child.pid!);
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString("utf8")));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
    child.on("error", reject);
    child.on("close", (code) => {
      const watched = stop();
      if (code !== 0) reject(new Error(`${path} exited ${code}: ${stderr.slice(-2000)}`));
      else resolvePromise({ result: stdout + stderr, ...watched });
    });
  });
}

export interface LlamaBenchResult {
  /** Prompt processing, best repetition, tokens/s. */
  promptTokensPerSecond: number;
  /** Token generation, best repetition, tokens/s. */
  generationTokensPerSecond: number;
}

/**
 * `llama-bench`: `promptTokens` in one batch into an empty cache, then `genTokens` one at a time
 * after `genDepth` tokens already in the cache (llama-bench's -d; a reply follows its prompt, and
 * attention costs grow with the tokens before it), best of `reps`.
 */
export async function llamaBench(tools: LlamaTools, model: string, o: { threads: number; promptTokens: number; genTokens: number; genDepth: number; reps: number }): Promise<ToolRun<LlamaBenchResult>> {
  const common = ["-m", model, "-t", String(o.threads), "-ngl", "0", "-r", String(o.reps), "-o", "json"];
  const prompt = await runTool(tools.bench, [...common, "-p", String(o.promptTokens), "-n", "0"]);
  const gen = await runTool(tools.bench, [...common, "-p", "0", "-n", String(o.genTokens), "-d", String(o.genDepth)]);
  const best = (out: string) => {
    const rows = JSON.parse(out.slice(out.indexOf("["), out.lastIndexOf("]") + 1)) as Array<{ samples_ts: number[] }>;
    return Math.max(...(rows[0]?.samples_ts ?? [Number.NaN]));
  };
  return {
    result: { promptTokensPerSecond: best(prompt.result), generationTokensPerSecond: best(gen.result) },
    peakRssMiB: Math.max(prompt.peakRssMiB, gen.peakRssMiB),
    othersBusy: Math.max(prompt.othersBusy, gen.othersBusy),
  };
}

/** Total generation tokens/s of `llama-batched-bench` for each number of parallel sequences. */
export async function llamaBatchedBench(
  tools: LlamaTools,
  model: string,
  o: { threads: number; promptTokens: number; genTokens: number; parallel: readonly number[]; contextPerSequence: number },
): Promise<ToolRun<Record<number, number>>> {
  const ctx = o.contextPerSequence * Math.max(...o.parallel);
  const out = await runTool(tools.batchedBench, [
    "-m", model, "-t", String(o.threads), "-ngl", "0", "-c", String(ctx), "-b", "512", "-ub", "512",
    "-npp", String(o.promptTokens), "-ntg", String(o.genTokens), "-npl", o.parallel.join(","), "--output-format", "jsonl",
  ]);
  const speeds: Record<number, number> = {};
  for (const line of out.result.split("\n")) {
    if (!line.startsWith("{")) continue;
    const row = JSON.parse(line) as { pl: number; speed_tg: number };
    speeds[row.pl] = row.speed_tg;
  }
  return { result: speeds, peakRssMiB: out.peakRssMiB, othersBusy: out.othersBusy };
}
