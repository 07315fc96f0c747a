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

/**
 * Friend could not start for a reason outside the configuration's form (a port in use, a refused
 * token, an unreachable API): one line that names the variable to fix, printed without a stack trace.
 */
export class StartupError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StartupError";
  }
}

/** The first error code in an error's cause chain (`ECONNREFUSED`, `EADDRINUSE`, …), if any. */
export function errorCode(err: unknown): string | undefined {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    if (typeof e.code === "string" && e.code) return e.code;
  }
  return undefined;
}
