import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Real servers and real llama.cpp inference on 2 cores: give them room, never flake on load.
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
    maxWorkers: 2,
    // The default output, then the names of any test files a dead worker left unfinished.
    reporters: ["default", "./test/unfinished-reporter.ts"],
  },
});
