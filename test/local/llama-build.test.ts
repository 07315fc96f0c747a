/**
 * The native llama.cpp build's bookkeeping, and Friend's fallback to the prebuilt binary whenever
 * the native build is missing, made for another CPU, or broken: never a broken binary.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { applyOpenMpWaitEnv, cpuFlags, cpuMismatch, findLocalBuild, LOCAL_BUILDS_DIR, NATIVE_CMAKE_OPTIONS, OPENMP_WAIT_ENV, writeBuildMarker } from "../../src/backends/local/llama-build.ts";
import { llamaBinary, llamaRuntime } from "../../src/backends/local/runtime.ts";
import { capturingLogger, TEST_THREADS } from "./helpers.ts";

const tmp = mkdtempSync(join(tmpdir(), "friend-builds-"));
/** Folders this file adds to node-llama-cpp's real build folder; removed afterwards. */
const planted: string[] = [];
afterAll(() => {
  for (const dir of [tmp, ...planted]) rmSync(dir, { recursive: true, force: true });
});

/** Options no real build has, unique to this run (node_modules may be shared between checkouts). */
const testOptions = (what: string) => ({ FRIEND_TEST_BUILD: `${what}-${process.pid}-${Math.random().toString(36).slice(2)}` });

/** Lays out a finished-looking node-llama-cpp build folder: metadata, done marker, and an addon file. */
function plantBuild(dir: string, cmakeOptions: Record<string, string>, addon: string | Buffer = "not an ELF file"): void {
  mkdirSync(join(dir, "Release"), { recursive: true });
  const buildOptions = { customCmakeOptions: cmakeOptions, progressLogs: false, platform: "linux", platformInfo: { name: "Elsewhere OS", version: "1" }, arch: process.arch, gpu: false, llamaCpp: { repo: "ggml-org/llama.cpp", release: "v0.4.0" } };
  writeFileSync(join(dir, "Release", "_nlcBuildMetadata.json"), JSON.stringify({ buildOptions }));
  writeFileSync(join(dir, "Release", "llama-addon.node"), addon);
  writeFileSync(join(dir, "buildDone.status"), "");
}

/** node-llama-cpp's folder name for a CPU build with these options (getBuildFolderNameForBuildOptions). */
function nodeLlamaCppFolderName(options: Record<string, string>): string {
  const text = Object.keys(options).sort().map((k) => `${encodeURIComponent(k)}=${encodeURIComponent(options[k]!)}`).join(";");
  const hash = Array.from(createHash("sha1").update(text).digest()).map((b) => b.toString(36)).join("");
  return `${process.platform}-${process.arch}-${hash}`;
}

describe("cpuMismatch", () => {
  const marker = (cpuFlags: string[]) => ({ cmakeOptions: {}, cpuFlags, builtAt: "2026-12-01T00:00:00Z" });
  it.each([
    ["same CPU", ["avx2", "avx512f", "fma"], ["avx2", "avx512f", "fma"], undefined],
    ["this CPU has more", ["avx2", "fma"], ["avx2", "avx512f", "fma"], undefined],
    ["AVX-512 missing here", ["avx2", "avx512f", "avx512bw"], ["avx2", "fma"], "it was built on a CPU with avx512f, avx512bw, which this CPU lacks"],
    ["only non-instruction flags differ", ["avx2", "hypervisor", "pti"], ["avx2"], undefined],
    ["unknown build CPU (no /proc/cpuinfo there)", [], ["avx2"], undefined],
    ["unknown CPU here", ["avx512f"], [], undefined],
  ])("%s", (_name, built, here, expected) => {
    expect(cpuMismatch(marker(built), here)).toBe(expected);
  });

  it("no marker (built by node-llama-cpp's CLI directly): nothing to check", () => {
    expect(cpuMismatch(undefined, ["avx2"])).toBeUndefined();
  });
});

describe("cpuFlags", () => {
  it("reads the flags line of /proc/cpuinfo, sorted", () => {
    const path = join(tmp, "cpuinfo");
    writeFileSync(path, "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 avx512f\nbugs\t\t: none\n");
    expect(cpuFlags(path)).toEqual(["avx2", "avx512f", "fpu", "sse2"]);
  });

  it("is empty where there is no such file", () => {
    expect(cpuFlags(join(tmp, "nope"))).toEqual([]);
  });
});

describe("findLocalBuild", () => {
  const dir = join(tmp, "builds");
  const options = { GGML_NATIVE: "ON", GGML_OPENMP: "ON" };
  plantBuild(join(dir, "a-other-options"), { GGML_NATIVE: "ON" });
  plantBuild(join(dir, "b-unfinished"), options);
  rmSync(join(dir, "b-unfinished", "buildDone.status"));
  plantBuild(join(dir, "c-the-one"), options);

  it("finds the finished CPU build with exactly these options, and its marker", () => {
    expect(findLocalBuild(options, dir)?.dir).toBe(join(dir, "c-the-one"));
    expect(findLocalBuild(options, dir)?.marker).toBeUndefined();
    const marker = writeBuildMarker(join(dir, "c-the-one"), options);
    expect(findLocalBuild(options, dir)?.marker).toEqual(marker);
    expect(marker.cpuFlags).toEqual(cpuFlags());
  });

  it("finds nothing for options never built, or where there is no build folder at all", () => {
    expect(findLocalBuild({ GGML_NATIVE: "OFF" }, dir)).toBeUndefined();
    expect(findLocalBuild(options, join(tmp, "no-such-dir"))).toBeUndefined();
  });
});

describe("LLAMA_BUILD=native falls back to the prebuilt binary, with a warning that says why", () => {
  async function start(nativeCmakeOptions: Record<string, string>) {
    const { logger, lines } = capturingLogger();
    const llama = await llamaRuntime({ gpu: false, threads: TEST_THREADS, build: "native", nativeCmakeOptions, logger });
    const warning = lines.find((l) => l.msg === "native llama.cpp build not used; running the prebuilt binary");
    const binaryLine = lines.find((l) => l.msg === "llama.cpp binary");
    return { binary: llamaBinary(llama), warning, binaryLine };
  }

  it("when there is no native build", async () => {
    const { binary, warning, binaryLine } = await start(testOptions("never-built"));
    expect(binary).toMatchObject({ kind: "prebuilt", description: "prebuilt (cpu); native build not usable" });
    expect(binary.fallback).toContain("npm run build:llama");
    expect(warning?.reason).toBe(binary.fallback);
    expect(binaryLine?.binary).toBe(binary.description);
  });

  it("when the build was made on a CPU with instructions this one lacks", async () => {
    const options = testOptions("other-cpu");
    const dir = join(LOCAL_BUILDS_DIR, `friend-test-${options.FRIEND_TEST_BUILD}`);
    planted.push(dir);
    plantBuild(dir, options);
    writeFileSync(join(dir, "friend-build.json"), JSON.stringify({ cmakeOptions: options, cpuFlags: [...cpuFlags(), "avx1024_imaginary"], builtAt: "2026-12-01T00:00:00Z" }));
    const { binary, warning } = await start(options);
    expect(binary.kind).toBe("prebuilt");
    expect(warning?.reason).toContain("avx1024_imaginary, which this CPU lacks");
  });

  it("when the build is broken: node-llama-cpp fails to load it, and the prebuilt runs instead", async () => {
    const options = testOptions("broken");
    const dir = join(LOCAL_BUILDS_DIR, nodeLlamaCppFolderName(options));
    planted.push(dir);
    plantBuild(dir, options, Buffer.from("\x7fELF truncated"));
    const { binary, warning } = await start(options);
    expect(binary.kind).toBe("prebuilt");
    expect(warning?.reason).toMatch(/^the native build in .* failed to load/);
  });

  // Checked on the real native build, so it runs only where `npm run build:llama` made one.
  it.skipIf(!findLocalBuild(NATIVE_CMAKE_OPTIONS))("the folder naming the broken-build case relies on is node-llama-cpp's", () => {
    expect(basename(findLocalBuild(NATIVE_CMAKE_OPTIONS)!.dir)).toBe(nodeLlamaCppFolderName({ ...NATIVE_CMAKE_OPTIONS }));
  });
});

describe("OpenMP's wait settings for the native build", () => {
  it.each([
    ["nothing set: both are set", {}, OPENMP_WAIT_ENV],
    ["the operator's wait policy is kept, and nothing is added", { OMP_WAIT_POLICY: "passive" }, {}],
    ["the operator's spin count is kept, and nothing is added", { GOMP_SPINCOUNT: "1000" }, {}],
    ["an empty value counts as set", { OMP_WAIT_POLICY: "" }, {}],
  ])("%s", (_what, before: Record<string, string>, added) => {
    const env: NodeJS.ProcessEnv = { ...before, PATH: "/bin" };
    expect(applyOpenMpWaitEnv(env)).toEqual(added);
    expect(env).toEqual({ ...before, ...added, PATH: "/bin" });
  });

  // What libgomp itself read, printed by it at load (OMP_DISPLAY_ENV): so only where a native build exists.
  it.skipIf(!findLocalBuild(NATIVE_CMAKE_OPTIONS))("reach libgomp when the native build loads, unless the operator set their own", () => {
    const script = `import { llamaRuntime } from ${JSON.stringify(new URL("../../src/backends/local/runtime.ts", import.meta.url).pathname)};
      await llamaRuntime({ gpu: false, threads: 2, build: "native" });`;
    const run = (env: Record<string, string>) => {
      const { OMP_WAIT_POLICY: _p, GOMP_SPINCOUNT: _s, ...rest } = process.env;
      const child = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { env: { ...rest, OMP_DISPLAY_ENV: "verbose", ...env }, encoding: "utf8", timeout: 60_000 });
      expect(child.status).toBe(0);
      return child.stderr;
    };
    const ours = run({});
    expect(ours).toContain("OMP_WAIT_POLICY = 'ACTIVE'");
    expect(ours).toContain("GOMP_SPINCOUNT = '300000'");
    expect(run({ GOMP_SPINCOUNT: "1000" })).toContain("GOMP_SPINCOUNT = '1000'");
  });
});
