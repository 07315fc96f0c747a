/**
 * The descriptive metadata llama.cpp's converter copies from an adapter's folder and its model
 * card (README.md's YAML front matter): the name, licence, base models, tags and languages. The
 * converter's guesses of a base name, fine-tune label, version and size from folder names are left
 * out: llama.cpp reads none of these keys, they only describe the file.
 */
import { readFile } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { parse } from "yaml";
import type { GgufWriter } from "../gguf/writer.ts";

export interface AdapterDescription {
  name: string;
  license?: string;
  baseModels: { name?: string; organization?: string; repoUrl?: string }[] | undefined;
  tags?: string[];
  languages?: string[];
}

/** Reads `dir/README.md`'s front matter, if any; a card that does not parse is ignored, as the converter ignores a missing one. */
export async function describeAdapter(dir: string, nameHint?: string): Promise<AdapterDescription> {
  const card = await readModelCard(dir);
  const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
  const list = (...values: unknown[]): string[] | undefined => {
    const out = values.flatMap((v) => (typeof v === "string" ? [v] : Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []));
    return out.length > 0 ? out : undefined;
  };
  const baseValue = card.base_model ?? card.base_models ?? card.base_model_sources;
  const baseModels = baseValue === undefined || baseValue === null ? undefined : (Array.isArray(baseValue) ? baseValue : [baseValue]).map(describeBaseModel);
  const license = Array.isArray(card.license) ? card.license.join(",") : str(card.license);
  return {
    name: str(card.model_name) ?? idToTitle(nameHint ?? basename(resolve(dir))),
    ...(license ? { license } : {}),
    baseModels,
    tags: list(card.tags, card.pipeline_tag),
    languages: list(card.languages, card.language),
  };
}

async function readModelCard(dir: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(join(dir, "README.md"), "utf8");
  } catch {
    return {};
  }
  const m = /^---\r?\n([\s\S]*?)\r?\n---(?:\r?\n|$)/.exec(text);
  if (!m) return {};
  try {
    const data: unknown = parse(m[1]!);
    return typeof data === "object" && data !== null && !Array.isArray(data) ? (data as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

function describeBaseModel(id: unknown): { name?: string; organization?: string; repoUrl?: string } {
  if (typeof id !== "string") return {};
  if (/^(?:https?|ssh):\/\//.test(id)) {
    const hf = /^https?:\/\/huggingface\.co\/([^/]+)\/([^/]+)$/.exec(id);
    return { repoUrl: id, ...(hf ? { name: idToTitle(hf[2]!), organization: idToTitle(hf[1]!) } : {}) };
  }
  const slash = id.indexOf("/");
  if (slash < 0 || id.includes(" ")) return { name: idToTitle(id) };
  const org = id.slice(0, slash);
  const name = id.slice(slash + 1);
  if (org.startsWith(".")) return { name: idToTitle(name) };
  return { name: idToTitle(name), organization: idToTitle(org), repoUrl: `https://huggingface.co/${org}/${name}` };
}

/** gguf-py's `Metadata.id_to_title`: words title-cased unless they hold capitals or are versions and numbers. */
export function idToTitle(id: string): string {
  return id
    .trim()
    .replaceAll("-", " ")
    .split(/\s+/)
    .filter(Boolean)
    .map((w) => (w === w.toLowerCase() && /[a-z]/.test(w) && !/^(?:v\d+(?:\.\d+)*|\d.*)$/.test(w) ? pythonTitle(w) : w))
    .join(" ");
}

/** Python's str.title(): each run of letters starts upper-case, the rest lower. */
function pythonTitle(word: string): string {
  return word.replace(/[A-Za-z]+/g, (run) => run[0]!.toUpperCase() + run.slice(1).toLowerCase());
}

/** Adds the description as gguf-py's `set_gguf_meta_model` does: in its order, skipping empty strings and lists. */
export function writeDescription(writer: GgufWriter, d: AdapterDescription): void {
  const string = (key: string, value: string | undefined) => {
    if (value) writer.string(key, value);
  };
  string("general.name", d.name);
  string("general.license", d.license);
  if (d.baseModels) {
    writer.u32("general.base_model.count", d.baseModels.length);
    d.baseModels.forEach((b, i) => {
      string(`general.base_model.${i}.name`, b.name);
      string(`general.base_model.${i}.organization`, b.organization);
      string(`general.base_model.${i}.repo_url`, b.repoUrl);
    });
  }
  if (d.tags?.length) writer.array("general.tags", "string", d.tags);
  if (d.languages?.length) writer.array("general.languages", "string", d.languages);
}
