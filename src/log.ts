import pino, { type DestinationStream, type Logger } from "pino";

/** Discord bot tokens, webhook/interaction tokens in URLs, and bearer headers. */
const TOKEN_PATTERNS = [
  /[MNO][A-Za-z\d_-]{23,}\.[\w-]{6}\.[\w-]{27,}/g,
  /(\/(?:webhooks|interactions)\/\d+\/)[^/\s"?]+/g,
  /(Bearer |Bot )[^\s"]+/g,
  /sk-[A-Za-z0-9_-]{8,}/g,
];

/** Replaces every secret, and anything shaped like a token, with [REDACTED]. */
export function redactSecrets(line: string, secrets: readonly string[]): string {
  for (const secret of secrets) if (secret.length >= 6) line = line.replaceAll(secret, "[REDACTED]");
  for (const pattern of TOKEN_PATTERNS) line = line.replace(pattern, (_m, keep?: string) => `${typeof keep === "string" ? keep : ""}[REDACTED]`);
  return line;
}

export interface LoggerOptions {
  level: string;
  /** Values that must never reach a log line: the bot token, API keys. */
  secrets: readonly string[];
  /** Where lines go; defaults to stdout, pretty when it is a terminal. */
  destination?: DestinationStream;
}

/**
 * pino JSON logs. Redaction happens on the final line, so a token hidden in an error message or a
 * request URL is caught as surely as one in a field.
 */
export function createLogger(options: LoggerOptions): Logger {
  const secrets = [...options.secrets];
  const pretty = !options.destination && process.stdout.isTTY;
  return pino(
    {
      level: options.level,
      redact: { paths: ["token", "*.token", "apiKey", "*.apiKey", "authorization", "*.authorization", "*.headers.authorization"], censor: "[REDACTED]" },
      hooks: { streamWrite: (line) => redactSecrets(line, secrets) },
      ...(pretty ? { transport: { target: "pino-pretty", options: { colorize: true } } } : {}),
    },
    options.destination ?? (pretty ? undefined : pino.destination(1)),
  );
}
