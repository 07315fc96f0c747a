// npm run bench [-- tokens|data|local|load|soak|disruption|eval|adapter|store-outage [args]]: runs the benchmarks, one process each,
// so one bench's memory never shows up in another's figures. With no name: tokens, data, local, load.
import { spawnSync } from "node:child_process";

const BENCHES: Record<string, string[]> = {
  tokens: ["bench/tokens.ts"],
  data: ["bench/data.ts"],
  local: ["bench/local.ts"],
  load: ["bench/load.ts", "load"],
  soak: ["bench/load.ts", "soak"],
  disruption: ["bench/load.ts", "disruption"],
  eval: ["bench/eval.ts"],
  adapter: ["bench/adapter-import.ts"],
  "store-outage": ["bench/store-outage.ts"],
};

const [name, ...args] = process.argv.slice(2);
const chosen = name ? [name] : ["tokens", "data", "local", "load"];
for (const bench of chosen) {
  const command = BENCHES[bench];
  if (!command) {
    console.error(`unknown bench "${bench}"; choose one of ${Object.keys(BENCHES).join(", ")}`);
    process.exit(2);
  }
  console.log(`\n== ${bench}`);
  const result = spawnSync(process.execPath, ["--expose-gc", "--import", "tsx", ...command, ...(name ? args : [])], { stdio: "inherit" });
  if (result.status !== 0) process.exit(result.status ?? 1);
}
