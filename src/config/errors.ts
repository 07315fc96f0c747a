import type { z } from "zod";

/** Bad configuration: one message naming every wrong setting, meant to be printed without a stack trace. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Friend cannot start, the configuration is wrong:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

export function formatIssues(error: z.ZodError, where?: string): string[] {
  return error.issues.map((issue) => {
    const path = issue.path.join(".") || "(root)";
    return `${where ? `${where}: ` : ""}${path}: ${issue.message}`;
  });
}
