import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import ts from "typescript";

/**
 * The room a file under the source root lives in: its top-level folder, or for a top-level file its
 * name without `.ts` (main, app, cli, engine, log each wire several rooms together).
 */
export function roomOf(root: string, path: string): string {
  const parts = relative(root, path).split("/");
  return parts.length === 1 ? parts[0]!.replace(/\.ts$/, "") : parts[0]!;
}

/**
 * Every relative module specifier a file uses, read by the TypeScript parser: static imports in any
 * quoting, bare `import "…"`, `import type`, `export … from`, `import("…")` and `require("…")`.
 */
export function specifiersOf(path: string, text: string = readFileSync(path, "utf8")): string[] {
  const file = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteralLike(node.moduleSpecifier)) {
      found.push(node.moduleSpecifier.text);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference) && ts.isStringLiteralLike(node.moduleReference.expression)) {
      found.push(node.moduleReference.expression.text);
    } else if (ts.isCallExpression(node) && node.arguments.length > 0 && ts.isStringLiteralLike(node.arguments[0]!)) {
      const callee = node.expression;
      if (callee.kind === ts.SyntaxKind.ImportKeyword || (ts.isIdentifier(callee) && callee.text === "require")) found.push(node.arguments[0].text);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteralLike(node.argument.literal)) {
      found.push(node.argument.literal.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  return found;
}

/** room → rooms it imports, over every `.ts` file under `root`, with one example file per edge. */
export function roomGraph(root: string): Map<string, Map<string, string>> {
  const graph = new Map<string, Map<string, string>>();
  const files = readdirSync(root, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts"));
  for (const file of files) {
    const path = join(root, file);
    const from = roomOf(root, path);
    const edges = graph.get(from) ?? new Map<string, string>();
    graph.set(from, edges);
    for (const spec of specifiersOf(path)) {
      if (!spec.startsWith(".")) continue;
      const to = roomOf(root, resolve(dirname(path), spec));
      if (to !== from && !edges.has(to)) edges.set(to, file);
    }
  }
  return graph;
}

/** What breaks the rules: an edge not allowed, a room no rule names, and any cycle. Empty when the tree keeps them. */
export function violations(root: string, allowed: Readonly<Record<string, readonly string[]>>): string[] {
  const graph = roomGraph(root);
  const found: string[] = [];
  for (const [from, edges] of graph) {
    const rule = allowed[from];
    if (!rule) {
      found.push(`${from}: a room with no rule (add it to the allowed edges)`);
      continue;
    }
    for (const [to, file] of edges) if (!rule.includes(to)) found.push(`${from} → ${to} is not allowed (${file})`);
  }
  const visit = (node: string, path: string[]): void => {
    for (const next of graph.get(node)?.keys() ?? []) {
      if (path.includes(next)) found.push(`cycle: ${[...path.slice(path.indexOf(next)), next].join(" → ")}`);
      else visit(next, [...path, next]);
    }
  };
  for (const node of graph.keys()) visit(node, [node]);
  return [...new Set(found)];
}
