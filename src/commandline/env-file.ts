import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { parse } from "dotenv";

/**
 * Sets `KEY=value` in the text of a .env file: every existing assignment of KEY (with or
 * without `export`) is rewritten in place, otherwise one line is appended. Other lines,
 * comments and line endings are left exactly as they were.
 */
export function setEnvValue(text: string, key: string, value: string): string {
  const assignment = new RegExp(`^(\\s*(?:export\\s+)?)${escapeRegExp(key)}\\s*=.*?(\\r?\\n?)$`, "s");
  let found = false;
  // Each line keeps its own ending, so a file with mixed endings is not rewritten.
  const lines = text.split(/(?<=\n)/).map((line) =>
    line.replace(assignment, (_, prefix: string, ending: string) => {
      found = true;
      return `${prefix}${key}=${value}${ending}`;
    }),
  );
  if (found) return lines.join("");
  const newline = text.includes("\r\n") ? "\r\n" : "\n";
  const separator = text === "" || text.endsWith("\n") ? "" : newline;
  return `${text}${separator}${key}=${value}${newline}`;
}

export function updateEnvFile(path: string, key: string, value: string): void {
  const text = existsSync(path) ? readFileSync(path, "utf8") : "";
  writeFileSync(path, setEnvValue(text, key, value));
}

/** The variables a .env file sets; none when it does not exist. */
export function readEnvFile(path: string): Record<string, string> {
  return existsSync(path) ? parse(readFileSync(path)) : {};
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
