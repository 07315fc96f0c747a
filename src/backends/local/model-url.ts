/**
 * Looks at a model URL before node-llama-cpp's downloader does. That downloader retries every
 * failure for minutes (150 times), so a URL that can never work is caught here, with its reason:
 * a redirect loop or chain, an error status, a web page instead of a file, or credentials in the
 * URL (which `fetch` refuses to send as they are; they become a Basic Authorization header).
 */
import { displayUrl } from "../../core/model-source.ts";

/** As browsers and curl do, more or less; a chain longer than this is a misconfiguration. */
export const MAX_REDIRECTS = 10;

/** What to hand the downloader. */
export interface ResolvedModelUrl {
  /**
   * The URL without credentials; where it redirected only when that is another origin and the URL
   * had credentials (node-llama-cpp's fetch would send them on). Otherwise not the redirect target:
   * a split GGUF's other parts are found by the name in the URL, and a signed target may expire.
   */
  url: string;
  /** The credentials as an Authorization header, for the URL's own origin. */
  headers: Record<string, string>;
}

/** A URL that cannot be downloaded; the message is the reason, in words, with no secrets in it. */
export class ModelUrlError extends Error {}

/**
 * Follows `url`'s redirects (at most MAX_REDIRECTS, a loop fails at once) and reads the first
 * bytes of the file it ends at, which must be a GGUF file (unless `expect` is "any": a PEFT
 * adapter's JSON and safetensors files). Credentials in the URL are sent as
 * Basic authorization, to the URL's own origin only. Throws ModelUrlError with the reason, or the
 * signal's reason when it aborts.
 */
export async function resolveModelUrl(url: string, signal: AbortSignal, expect: "gguf" | "any" = "gguf"): Promise<ResolvedModelUrl> {
  const start = new URL(url);
  const headers: Record<string, string> = {};
  if (start.username || start.password) {
    const user = decodeURIComponent(start.username);
    const password = decodeURIComponent(start.password);
    headers.authorization = `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
    start.username = "";
    start.password = "";
  }
  const seen: string[] = [];
  let current = start;
  for (;;) {
    seen.push(current.href);
    // Credentials go to the origin they were given for, never to wherever it redirects.
    const sent = current.origin === start.origin ? headers : {};
    let response: Response;
    try {
      response = await fetch(current, { redirect: "manual", headers: { accept: "*/*", "accept-encoding": "identity", ...sent }, signal });
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      throw new ModelUrlError(`cannot reach ${displayUrl(current)}: ${networkReason(err)}`);
    }
    const location = response.headers.get("location");
    if (response.status >= 300 && response.status < 400 && location !== null) {
      await response.body?.cancel().catch(() => undefined);
      const next = new URL(location, current);
      if (seen.includes(next.href)) throw new ModelUrlError(`the server redirects in a loop (${[...seen.slice(seen.indexOf(next.href)), next.href].map((u) => displayUrl(new URL(u))).join(" → ")})`);
      if (seen.length > MAX_REDIRECTS) throw new ModelUrlError(`the server redirected more than ${MAX_REDIRECTS} times (last to ${displayUrl(next)})`);
      if (next.protocol !== "http:" && next.protocol !== "https:") throw new ModelUrlError(`the server redirected to a ${next.protocol}// address, which cannot be downloaded`);
      current = next;
      continue;
    }
    try {
      if (response.status < 200 || response.status >= 300) {
        const answer = `the server answered ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`;
        throw new ModelUrlError(response.status === 401 && headers.authorization && current.origin === start.origin ? `${answer} (the user name and password in the URL were refused)` : answer);
      }
      const type = response.headers.get("content-type") ?? "";
      if (/\btext\/html\b|\bapplication\/xhtml\b/i.test(type)) {
        throw new ModelUrlError(`the server sent a web page (${type.split(";")[0]}), not a GGUF file; give the file's direct download link`);
      }
      const first = await firstBytes(response, 4, signal);
      if (first.length === 0) throw new ModelUrlError("the server sent an empty file");
      if (expect === "gguf" && (first.length < 4 || first.toString("latin1") !== "GGUF")) {
        throw new ModelUrlError(`the server sent something that is not a GGUF file (it starts with ${JSON.stringify(first.toString("latin1"))}, not "GGUF")`);
      }
    } finally {
      await response.body?.cancel().catch(() => undefined);
    }
    if (current.origin !== start.origin && headers.authorization) return { url: current.href, headers: {} };
    return { url: start.href, headers };
  }
}

/** Up to `count` bytes from the start of the body, without reading the rest. */
async function firstBytes(response: Response, count: number, signal: AbortSignal): Promise<Buffer> {
  if (!response.body) return Buffer.alloc(0);
  const reader = response.body.getReader();
  const parts: Uint8Array[] = [];
  let length = 0;
  try {
    while (length < count) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
      length += value.length;
    }
  } catch (err) {
    if (signal.aborted) throw signal.reason;
    throw new ModelUrlError(`the connection broke before the file began: ${networkReason(err)}`);
  } finally {
    reader.releaseLock();
  }
  return Buffer.concat(parts).subarray(0, count);
}

/** undici's fetch says only "fetch failed"; the reason (ECONNREFUSED, ENOTFOUND…) is its cause. */
function networkReason(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err as Error).message;
}
