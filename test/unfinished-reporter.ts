/**
 * A vitest reporter that names what a run left unfinished. When a test worker dies (a native crash,
 * the OOM killer), vitest says only "Worker exited unexpectedly": this prints, last in the output,
 * each test file that neither passed nor failed and the tests in it that had begun but not ended,
 * so a crash seen once in CI points at its file and test.
 */
import type { Reporter, TestCase, TestModule } from "vitest/node";

export default class UnfinishedReporter implements Reporter {
  readonly #begun = new Set<TestCase>();

  onTestCaseReady(test: TestCase): void {
    this.#begun.add(test);
  }

  onTestCaseResult(test: TestCase): void {
    this.#begun.delete(test);
  }

  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const lines: string[] = [];
    for (const module of modules) {
      const state = module.state();
      if (state === "passed" || state === "failed" || state === "skipped") continue;
      const begun = [...this.#begun].filter((t) => t.module === module).map((t) => t.fullName);
      const ended = [...module.children.allTests()].filter((t) => t.result().state !== "pending").length;
      lines.push(`  ${module.moduleId} (${state}; ${ended} tests ended${begun.length ? `; begun, never ended: ${begun.join(" | ")}` : ""})`);
    }
    if (lines.length) process.stderr.write(`\nTest files that never finished (their worker died?):\n${lines.join("\n")}\n`);
  }
}
