import type { Logger } from "pino";
import { LocalBackend } from "../backends/local.ts";
import { OpenAIBackend } from "../backends/openai.ts";
import type { Config } from "../config/env.ts";
import type { BackendName } from "../core/backend.ts";
import { parseModelSource } from "../core/model-source.ts";
import { UsageError } from "../commandline/errors.ts";
import { openAIOptions } from "../backends/registry.ts";

/** A contestant as given on the command line: `NAME=SPEC`. */
export interface ContestantSpec {
  name: string;
  /** The SPEC as written, for the report. */
  spec: string;
  backend: BackendName;
  /** openai: another model id; local: the base model (path, hf: URI or URL). Unset: the configured one. */
  model?: string;
  /** local only: the adapter, or null for the base model alone. Unset: the configured one. */
  adapter?: string | null;
  adapterScale?: number;
}

export const CONTESTANT_USAGE = `  --contestant NAME=SPEC   repeat for each; SPEC names a backend as the bot would run it:
                           openai            OPENAI_MODEL on OPENAI_BASE_URL (or OpenAI)
                           openai:MODEL      another model on the same server
                           local             LLAMA_MODEL_PATH with LLAMA_LORA_PATH at LLAMA_LORA_SCALE
                           local:MODEL[+ADAPTER[@SCALE]]   MODEL and ADAPTER as in LLAMA_MODEL_PATH
                                             and LLAMA_LORA_PATH (path, hf: URI, URL); no ADAPTER = base model`;

const NAME = /^[\w.-]{1,40}$/;

export function parseContestant(value: string): ContestantSpec {
  const eq = value.indexOf("=");
  if (eq <= 0) throw new UsageError(`--contestant takes NAME=SPEC, not "${value}"`);
  const name = value.slice(0, eq);
  const spec = value.slice(eq + 1).trim();
  if (!NAME.test(name)) throw new UsageError(`--contestant name "${name}" must be 1-40 letters, digits, '.', '_' or '-'`);
  if (spec === "openai" || spec === "local") return { name, spec, backend: spec };
  if (spec.startsWith("openai:") && spec.length > "openai:".length) return { name, spec, backend: "openai", model: spec.slice("openai:".length) };
  if (spec.startsWith("local:") && spec.length > "local:".length) return { name, spec, backend: "local", ...localParts(spec.slice("local:".length), name) };
  throw new UsageError(`--contestant ${name}: "${spec}" is not openai, openai:MODEL, local or local:MODEL[+ADAPTER[@SCALE]]`);
}

/** `MODEL+ADAPTER@SCALE`: split at the last "+" and the last "@" (a scale is a number, so a URL's "@" stays). */
function localParts(rest: string, name: string): Pick<ContestantSpec, "model" | "adapter" | "adapterScale"> {
  const plus = rest.lastIndexOf("+");
  const model = plus > 0 ? rest.slice(0, plus) : rest;
  let adapter: string | null = null;
  let adapterScale: number | undefined;
  if (plus > 0) {
    adapter = rest.slice(plus + 1);
    const at = adapter.lastIndexOf("@");
    if (at > 0 && /^\d*\.?\d+$/.test(adapter.slice(at + 1))) {
      adapterScale = Number(adapter.slice(at + 1));
      adapter = adapter.slice(0, at);
    }
    if (!adapter) throw new UsageError(`--contestant ${name}: nothing after "+"; give the adapter, or leave "+" out for the base model`);
  }
  for (const [role, source] of [["model", model], ["adapter", adapter]] as const) {
    if (source === null) continue;
    try {
      parseModelSource(source);
    } catch (err) {
      throw new UsageError(`--contestant ${name}: the ${role} "${source}": ${(err as Error).message}`);
    }
  }
  return { model, adapter, ...(adapterScale !== undefined ? { adapterScale } : {}) };
}

/** The backend exactly as the bot builds it from the configuration, with the contestant's model and adapter in place of the configured ones. */
export function contestantBackend(contestant: ContestantSpec, config: Config, logger: Logger): OpenAIBackend | LocalBackend {
  if (contestant.backend === "openai") {
    return new OpenAIBackend({ ...openAIOptions(config, logger), ...(contestant.model ? { model: contestant.model } : {}) });
  }
  return new LocalBackend({
    ...config.local,
    ...(contestant.model ? { modelPath: contestant.model, loraPath: contestant.adapter ?? undefined } : {}),
    ...(contestant.adapterScale !== undefined ? { loraScale: contestant.adapterScale } : {}),
    // The eval draws its own progress; a download still logs its progress lines.
    progressBar: false,
    logger,
  });
}

/** What the report says a contestant ran: the model and adapter actually configured. */
export function describeContestant(backend: OpenAIBackend | LocalBackend): string {
  const info = backend.describe();
  return info.adapter ? `${info.backend}: ${info.model} + ${info.adapter}` : `${info.backend}: ${info.model}`;
}
