/**
 * `npm run build:llama`: builds llama.cpp for this machine with node-llama-cpp's own tooling, from
 * the source it ships (`node_modules/node-llama-cpp/llama/gitRelease.bundle`; no network), with
 * Friend's native options (src/backends/local/llama-build.ts). Then checks that the result loads
 * and runs, and records the CPU it was built for. Friend uses it when LLAMA_BUILD=native.
 *
 * Needs cmake and a C++ compiler (g++ or clang). Takes several minutes. Exits non-zero, leaving
 * no usable build behind, when anything fails; Friend then keeps running the prebuilt binary.
 *
 *   npm run build:llama            build (again, if one exists)
 *   npm run build:llama -- --check report whether a usable native build exists, build nothing
 *   npm run build:llama -- --slim  also delete the llama.cpp source tree afterwards (~200 MB; for images)
 */
import { rmSync } from "node:fs";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";
import { cpuMismatch, findLocalBuild, LLAMA_CPP_SOURCE_DIR, NATIVE_CMAKE_OPTIONS, writeBuildMarker } from "../src/backends/local/llama-build.ts";

const options = Object.entries(NATIVE_CMAKE_OPTIONS).map(([k, v]) => `${k}=${v}`).join(" ");

if (process.argv.includes("--check")) {
  const found = findLocalBuild();
  const mismatch = cpuMismatch(found?.marker);
  if (!found) console.log(`no native llama.cpp build (${options}); run npm run build:llama`);
  else if (mismatch) console.log(`the native build in ${found.dir} cannot run here: ${mismatch}`);
  else console.log(`native llama.cpp build ready in ${found.dir}${found.marker ? `, built ${found.marker.builtAt}` : ""}`);
  process.exit(found && !mismatch ? 0 : 1);
}

console.error(`building llama.cpp for this machine (${options}) from node-llama-cpp's bundled source; this takes several minutes`);
const started = Date.now();
try {
  // forceRebuild: clone the bundled source if needed, compile, and load the result (a first check that it works).
  const llama = await getLlama({
    gpu: false,
    build: "forceRebuild",
    cmakeOptions: { ...NATIVE_CMAKE_OPTIONS },
    usePrebuiltBinaries: false,
    progressLogs: true,
    logLevel: LlamaLogLevel.warn,
  });
  if (llama.buildType !== "localBuild") throw new Error(`node-llama-cpp loaded a ${llama.buildType} binary instead of the new build`);
  console.error(`llama.cpp system info: ${llama.systemInfo}`);
  await llama.dispose();
} catch (err) {
  // A build that compiled but does not load must not be picked up later.
  const half = findLocalBuild();
  if (half) rmSync(half.dir, { recursive: true, force: true });
  console.error(`\nThe native llama.cpp build failed: ${(err as Error).message}`);
  console.error("Friend keeps using node-llama-cpp's prebuilt binary (LLAMA_BUILD=native falls back to it, with a warning).");
  process.exit(1);
}

const built = findLocalBuild();
if (!built) {
  console.error("The build finished but node-llama-cpp's build folder for these options was not found.");
  process.exit(1);
}
writeBuildMarker(built.dir, NATIVE_CMAKE_OPTIONS);
if (process.argv.includes("--slim")) rmSync(LLAMA_CPP_SOURCE_DIR, { recursive: true, force: true });
console.error(`built in ${Math.round((Date.now() - started) / 1000)} s: ${built.dir}`);
console.error("Set LLAMA_BUILD=native to run Friend on it.");
