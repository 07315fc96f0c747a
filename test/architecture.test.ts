import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const SRC = fileURLToPath(new URL("../src", import.meta.url));

/** Top-level folder (or file) under src/ that a path belongs to. */
const area = (path: string) => relative(SRC, path).split("/")[0]!;

/** folder → folders it imports (static and dynamic relative imports of src/). */
function folderGraph(): Map<string, Set<string>> {
  const graph = new Map<string, Set<string>>();
  const files = readdirSync(SRC, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts"));
  for (const file of files) {
    const path = join(SRC, file);
    const from = area(path);
    if (!from.includes("/") && from.endsWith(".ts")) continue; // main.ts, app.ts, cli.ts, log.ts wire everything
    const edges = graph.get(from) ?? new Set<string>();
    graph.set(from, edges);
    for (const [, spec] of readFileSync(path, "utf8").matchAll(/(?:from|import\()\s*"(\.{1,2}\/[^"]+)"/g)) {
      const to = area(resolve(dirname(path), spec!));
      if (to !== from && !to.endsWith(".ts")) edges.add(to);
    }
  }
  return graph;
}

describe("architecture", () => {
  const graph = folderGraph();

  it("has no folder that imports a folder importing it back, directly or around a loop", () => {
    const cycles: string[] = [];
    const visit = (node: string, path: string[]) => {
      for (const next of graph.get(node) ?? []) {
        if (path.includes(next)) cycles.push([...path.slice(path.indexOf(next)), next].join(" → "));
        else visit(next, [...path, next]);
      }
    };
    for (const node of graph.keys()) visit(node, [node]);
    expect(cycles).toEqual([]);
  });

  it("keeps core, the shared vocabulary, free of every other folder", () => {
    expect([...(graph.get("core") ?? [])]).toEqual([]);
  });

  it("keeps the file formats (gguf) and the adapter importer (adapters) below the backends that use them", () => {
    expect([...(graph.get("gguf") ?? [])]).toEqual([]);
    expect([...(graph.get("adapters") ?? [])].filter((f) => !["gguf", "core"].includes(f))).toEqual([]);
  });

  it("runs discord → conversation → backends → core, never back up the chain", () => {
    const below = (folder: string, others: string[]) => [...(graph.get(folder) ?? [])].filter((f) => others.includes(f));
    expect(below("conversation", ["discord", "chat", "store", "ops"])).toEqual([]);
    expect(below("backends", ["discord", "chat", "conversation", "store", "ops"])).toEqual([]);
  });
});
