import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { specifiersOf, violations } from "./imports.ts";

const SRC = fileURLToPath(new URL("../../src", import.meta.url));

/**
 * The only imports allowed between rooms (top-level folders, and the top-level files that wire
 * them). Data flows one way, Discord event → conversation → backend → cleaner; core is the shared
 * vocabulary and imports nothing. Anything not listed here is refused.
 */
export const ALLOWED: Record<string, readonly string[]> = {
  core: [],
  // File formats, and the PEFT importer built on them: below the backends and commands that use them.
  gguf: [],
  adapters: ["core", "gguf"],
  config: ["core"],
  // The `friend` commands' plumbing: their I/O, options, errors and .env files.
  commandline: [],
  reply: ["core"],
  backends: ["core", "config", "reply", "gguf", "adapters"],
  conversation: ["core", "config", "reply"],
  store: ["core", "conversation"],
  ops: ["core", "config", "conversation"],
  data: ["core", "config", "backends", "adapters", "commandline"],
  discord: ["core", "config", "conversation", "backends", "reply", "commandline"],
  chat: ["core", "config", "conversation", "engine", "log", "commandline"],
  // `friend eval` is a front end of its own, like chat: it drives the engine's parts, and only the CLI imports it.
  eval: ["core", "config", "backends", "conversation", "data", "log", "reply", "store", "commandline"],
  log: [],
  engine: ["core", "config", "backends", "conversation", "store"],
  app: ["core", "config", "backends", "conversation", "discord", "engine", "ops", "store"],
  main: ["core", "config", "app", "log", "store"],
  cli: ["core", "chat", "data", "discord", "eval", "commandline"],
};

describe("architecture", () => {
  it("src/ keeps to the allowed imports between rooms, with no cycle", () => {
    expect(violations(SRC, ALLOWED)).toEqual([]);
  });

  it("reads every form of import", () => {
    const text = [
      `import a from './single.ts';`,
      `import "./bare.ts";`,
      `import type { T } from "./typed.ts";`,
      `export { x } from "./reexport.ts";`,
      `export * from "./star.ts";`,
      `const d = await import("./dynamic.ts");`,
      `const r = require("./required.ts");`,
      `type L = import("./type-import.ts").T;`,
      `import fs from "node:fs";`,
    ].join("\n");
    expect(specifiersOf("x.ts", text)).toEqual([
      "./single.ts",
      "./bare.ts",
      "./typed.ts",
      "./reexport.ts",
      "./star.ts",
      "./dynamic.ts",
      "./required.ts",
      "./type-import.ts",
      "node:fs",
    ]);
  });

  /** A tiny source tree: path → contents. */
  const tree = (files: Record<string, string>): string => {
    const root = mkdtempSync(join(tmpdir(), "friend-arch-"));
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(dirname(join(root, path)), { recursive: true });
      writeFileSync(join(root, path), text);
    }
    return root;
  };
  const rules = { core: [], conversation: ["core"], backends: ["core"], main: ["conversation", "backends", "core"] };
  const fine = { "core/turn.ts": "export type T = 1;", "conversation/s.ts": `import type { T } from "../core/turn.ts";`, "backends/b.ts": `import "../core/turn.ts";`, "main.ts": `import "./conversation/s.ts";` };

  it("passes a tree that keeps the rules", () => {
    expect(violations(tree(fine), rules)).toEqual([]);
  });

  it.each([
    ["a single-quoted import up the chain", { "backends/b.ts": `import { s } from '../conversation/s.ts';` }, "backends → conversation is not allowed (backends/b.ts)"],
    ["a bare import", { "core/x.ts": `import "../backends/b.ts";` }, "core → backends is not allowed (core/x.ts)"],
    ["an export … from", { "conversation/y.ts": `export { b } from "../backends/b.ts";` }, "conversation → backends is not allowed (conversation/y.ts)"],
    ["a dynamic import", { "core/z.ts": `const m = await import("../conversation/s.ts");` }, "core → conversation is not allowed (core/z.ts)"],
    ["a top-level file imported from a folder", { "core/w.ts": `import "../main.ts";` }, "core → main is not allowed (core/w.ts)"],
    ["a folder no rule names", { "extras/e.ts": `import "../core/turn.ts";` }, "extras: a room with no rule (add it to the allowed edges)"],
  ])("fails on %s", (_, extra, message) => {
    expect(violations(tree({ ...fine, ...extra }), rules)).toContain(message);
  });

  it("fails on a cycle, even between rooms allowed to import each other", () => {
    const cyclic = { ...fine, "core/c.ts": `import "../conversation/s.ts";` };
    expect(violations(tree(cyclic), { ...rules, core: ["conversation"] })).toContain("cycle: core → conversation → core");
  });
});
