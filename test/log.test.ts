import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger, redactSecrets } from "../src/log.ts";

describe("redactSecrets", () => {
  it.each([
    ["token my-secret-value here", ["my-secret-value"], "token [REDACTED] here"],
    ["short abc stays", ["abc"], "short abc stays"],
    ["POST /interactions/123456789012345678/aW50ZXJhY3Rpb24tdG9rZW4/callback", [], "POST /interactions/123456789012345678/[REDACTED]/callback"],
    ["PATCH /webhooks/123456789012345678/aW50ZXJhY3Rpb24/messages/@original", [], "PATCH /webhooks/123456789012345678/[REDACTED]/messages/@original"],
    ["Authorization: Bot abc.def.ghi", [], "Authorization: Bot [REDACTED]"],
    ["key sk-proj-abcdefghijklmnop", [], "key [REDACTED]"],
    ["MTIzNDU2Nzg5MDEyMzQ1Njc4OTA.GabcDe.abcdefghijklmnopqrstuvwxyz0123", [], "[REDACTED]"],
  ])("%j", (line, secrets, expected) => {
    expect(redactSecrets(line, secrets)).toBe(expected);
  });

  it("applies to every line a logger writes, fields and messages alike", () => {
    let out = "";
    const destination = new Writable({
      write(chunk, _enc, done) {
        out += chunk.toString();
        done();
      },
    });
    const log = createLogger({ level: "info", secrets: ["hunter2-secret"], destination });
    log.info({ token: "anything", nested: { apiKey: "k" }, err: new Error("login failed with hunter2-secret") }, "using hunter2-secret");
    expect(out).not.toContain("hunter2-secret");
    expect(out).not.toContain('"anything"');
    expect(JSON.parse(out).token).toBe("[REDACTED]");
  });
});
