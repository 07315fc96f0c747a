import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ENV_VARIABLES } from "../../src/config/env.ts";

const read = (file: string) => readFileSync(new URL(`../../${file}`, import.meta.url), "utf8");

describe("configuration documentation", () => {
  it.each(ENV_VARIABLES)("%s is in the README's table and in .env.example", (name) => {
    expect(read("README.md")).toContain(`| \`${name}\` |`);
    expect(read(".env.example")).toMatch(new RegExp(`^#? ?${name}=`, "m"));
  });

  it("documents no variable that Friend does not read", () => {
    const documented = [...read(".env.example").matchAll(/^#? ?([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]);
    expect(documented.filter((name) => !ENV_VARIABLES.includes(name!))).toEqual([]);
  });
});
