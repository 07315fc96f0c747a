/**
 * Friend's native llama.cpp build: the source node-llama-cpp ships (`llama/gitRelease.bundle`,
 * the exact release its prebuilt binaries come from), compiled on this machine by
 * node-llama-cpp's own tooling with the options below. `npm run build:llama` makes it;
 * `LLAMA_BUILD=native` makes Friend use it (see runtime.ts). Nothing here needs a network.
 *
 * Why a build at all: the prebuilt CPU binary is compiled for many CPUs at once by an older
 * compiler, and runs some kernels (F16 matrix products above all) at half the speed of the same
 * source built for the machine. docs/PERFORMANCE.md has the figures.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

/**
 * The cmake options of the native build, chosen by measurement (docs/PERFORMANCE.md):
 * - `GGML_NATIVE`: compile the CPU backend for this CPU's instruction set (AVX-512 and so on).
 * - `GGML_OPENMP=ON`: node-llama-cpp attaches no ggml thread pool, so without OpenMP every decode
 *   starts and joins its worker threads afresh; OpenMP keeps one team alive. On a small model that
 *   doubled generation speed on 2 cores (llama.cpp's own tools attach a pool and do not need it).
 */
export const NATIVE_CMAKE_OPTIONS: Readonly<Record<string, string>> = { GGML_NATIVE: "ON", GGML_OPENMP: "ON" };

/**
 * How OpenMP threads wait, for the native build; libgomp reads these once, when llama.cpp loads it.
 * node-llama-cpp runs each decode on whichever libuv worker thread is free, and every such thread
 * gets an OpenMP team of its own. Once those teams hold more threads than there are CPUs, libgomp
 * by default spins only 100 times at a barrier before it sleeps, and ggml passes a barrier after
 * every node of the graph (hundreds a token, more with a LoRA adapter): generation ran 7–15%
 * slower than with the settings below (docs/PERFORMANCE.md). `active` makes that 1,000 spins;
 * `GOMP_SPINCOUNT` keeps the idle spin at libgomp's default, so a quiet Friend still sleeps.
 */
export const OPENMP_WAIT_ENV: Readonly<Record<string, string>> = { OMP_WAIT_POLICY: "active", GOMP_SPINCOUNT: "300000" };

/** Puts OPENMP_WAIT_ENV into `env` where the operator set nothing; returns what it set. */
export function applyOpenMpWaitEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const set: Record<string, string> = {};
  // The two go together: "active" alone would spin idle threads for minutes.
  if (env.OMP_WAIT_POLICY !== undefined || env.GOMP_SPINCOUNT !== undefined) return set;
  for (const [name, value] of Object.entries(OPENMP_WAIT_ENV)) env[name] = set[name] = value;
  return set;
}

const NODE_LLAMA_CPP_LLAMA_DIR = join(dirname(createRequire(import.meta.url).resolve("node-llama-cpp")), "..", "llama");
/** node-llama-cpp's folder of local builds (its `source build` writes there, `source clear` empties it). */
export const LOCAL_BUILDS_DIR = join(NODE_LLAMA_CPP_LLAMA_DIR, "localBuilds");
/** Where `node-llama-cpp source download` clones the bundled llama.cpp source. */
export const LLAMA_CPP_SOURCE_DIR = join(NODE_LLAMA_CPP_LLAMA_DIR, "llama.cpp");

/** Written next to a build by `npm run build:llama`: what it was built for. */
const MARKER_FILE = "friend-build.json";

export interface NativeBuildMarker {
  cmakeOptions: Record<string, string>;
  /** The CPU's feature flags where it was built (`/proc/cpuinfo`); empty where they cannot be read. */
  cpuFlags: string[];
  builtAt: string;
}

export interface LocalBuild {
  /** The build's folder under LOCAL_BUILDS_DIR. */
  dir: string;
  marker?: NativeBuildMarker;
}

/**
 * The finished CPU build made with exactly `cmakeOptions`, if there is one. node-llama-cpp names
 * its build folders by a hash of the options; its per-build metadata file says which they were.
 */
export function findLocalBuild(cmakeOptions: Readonly<Record<string, string>> = NATIVE_CMAKE_OPTIONS, buildsDir = LOCAL_BUILDS_DIR): LocalBuild | undefined {
  if (!existsSync(buildsDir)) return undefined;
  for (const name of readdirSync(buildsDir)) {
    const dir = join(buildsDir, name);
    const metadata = readJson<{ buildOptions?: { gpu?: unknown; customCmakeOptions?: Record<string, string> } }>(join(dir, "Release", "_nlcBuildMetadata.json"));
    const options = metadata?.buildOptions;
    if (!options || options.gpu !== false || !sameOptions(options.customCmakeOptions ?? {}, cmakeOptions)) continue;
    if (!existsSync(join(dir, "buildDone.status"))) continue;
    return { dir, marker: readJson<NativeBuildMarker>(join(dir, MARKER_FILE)) };
  }
  return undefined;
}

/** Records what the build in `dir` was made for, so a copy on another CPU is not loaded blindly. */
export function writeBuildMarker(dir: string, cmakeOptions: Readonly<Record<string, string>>): NativeBuildMarker {
  const marker: NativeBuildMarker = { cmakeOptions: { ...cmakeOptions }, cpuFlags: cpuFlags(), builtAt: new Date().toISOString() };
  writeFileSync(join(dir, MARKER_FILE), JSON.stringify(marker, null, 2) + "\n");
  return marker;
}

/**
 * Why a build made for `marker`'s CPU must not run here, or undefined when it may. A `GGML_NATIVE`
 * build uses every instruction its build machine had; on a CPU without one of them (an image built
 * on one host and run on another) it would die of SIGILL instead of failing cleanly.
 */
export function cpuMismatch(marker: NativeBuildMarker | undefined, here: readonly string[] = cpuFlags()): string | undefined {
  if (!marker || marker.cpuFlags.length === 0 || here.length === 0) return undefined;
  const have = new Set(here);
  const missing = marker.cpuFlags.filter((flag) => !have.has(flag) && INSTRUCTION_FLAG.test(flag));
  return missing.length === 0 ? undefined : `it was built on a CPU with ${missing.join(", ")}, which this CPU lacks`;
}

/** Instruction-set flags in /proc/cpuinfo, the ones a compiler may use (not "hypervisor", "pti"…). */
const INSTRUCTION_FLAG = /^(sse|ssse|avx|fma|f16c|bmi|amx|vnni|vpclmulqdq|vaes|gfni|popcnt|movbe|sha_ni|adx|aes)/;

/** This CPU's feature flags, from /proc/cpuinfo (Linux); empty elsewhere. */
export function cpuFlags(cpuinfo = "/proc/cpuinfo"): string[] {
  try {
    const line = readFileSync(cpuinfo, "utf8").split("\n").find((l) => /^flags\s*:/.test(l));
    return line ? line.replace(/^flags\s*:/, "").trim().split(/\s+/).sort() : [];
  } catch {
    return [];
  }
}

function sameOptions(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => a[k] === b[k]);
}

function readJson<T>(path: string): T | undefined {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as T;
  } catch {
    return undefined;
  }
}
