import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { progressFor } from "../../src/eval/progress.ts";

describe("eval progress", () => {
  it("draws a bar with an ETA on a terminal", async () => {
    const stream = Object.assign(new PassThrough(), { isTTY: true, columns: 100, cursorTo: () => true, clearLine: () => true, moveCursor: () => true }) as unknown as NodeJS.WriteStream;
    let drawn = "";
    (stream as unknown as PassThrough).on("data", (chunk: Buffer) => (drawn += chunk.toString()));
    const lines: string[] = [];
    const progress = progressFor(stream, (line) => lines.push(line));
    progress.start("lora", 4, 1);
    progress.tick();
    progress.stop();
    await new Promise((resolve) => setImmediate(resolve));
    expect(drawn).toMatch(/lora \[[█░]+\] 2\/4 \| 50% \| ETA /);
    expect(lines).toEqual([]);
  });

  it("writes plain lines elsewhere: where it starts, and the end", () => {
    const lines: string[] = [];
    const progress = progressFor({ isTTY: false } as NodeJS.WriteStream, (line) => lines.push(line));
    progress.start("base", 3, 1);
    progress.tick();
    progress.tick();
    expect(lines).toEqual(["base: 1/3 items done, starting", "base: 3/3 items (100%)"]);
  });
});
