/**
 * Where a model or adapter comes from (LLAMA_MODEL_PATH, LLAMA_LORA_PATH): a file path, a Hugging
 * Face URI or an http(s) URL. Parsing and naming only; `model-download.ts` fetches them. Kept free
 * of node-llama-cpp so that the config can validate sources without loading it.
 */
import { basename } from "node:path";

export type ModelSource =
  | { kind: "file"; path: string }
  /** `hf:user/repo:QUANT` or `hf:user/repo/path/file.gguf#branch`, as node-llama-cpp reads them. */
  | { kind: "huggingface"; uri: string }
  /** `fileName` is the URL's last path segment: the name the download gets in its folder. */
  | { kind: "url"; url: string; fileName: string };

const HF_SCHEME = /^(?:hf|huggingface):(?:\/\/)?/i;
const ANY_SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;

/** Reads a source, or throws an Error saying what form it should have. */
export function parseModelSource(value: string): ModelSource {
  if (HF_SCHEME.test(value)) {
    const [user, repo, ...path] = value.replace(HF_SCHEME, "").split("/");
    const file = path.join("/").split("#")[0];
    if (!user || !repo || repo.startsWith(":") || (path.length > 0 && !file)) {
      throw new Error(`"${value}" is not a Hugging Face URI like hf:user/repo:Q4_K_M or hf:user/repo/file.gguf`);
    }
    return { kind: "huggingface", uri: value };
  }
  if (ANY_SCHEME.test(value)) {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      throw new Error("is not a valid URL");
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new Error(`${url.protocol}// is not supported: give a file path, an hf: URI or an http(s) URL`);
    }
    const fileName = safeFileName(url.pathname.split("/").pop() ?? "");
    if (!fileName) throw new Error(`the URL ${displayUrl(url)} does not end in a file name (like https://host/model.gguf)`);
    return { kind: "url", url: value, fileName };
  }
  return { kind: "file", path: value };
}

/** The source as it may be logged and shown: a URL loses its query and credentials (a signed URL's signature is a secret). */
export function describeModelSource(source: ModelSource): string {
  switch (source.kind) {
    case "file":
      return source.path;
    case "huggingface":
      return source.uri;
    case "url":
      return displayUrl(new URL(source.url));
  }
}

/** A short name for /status and /model: the file's name, or the hf: URI. */
export function modelSourceName(source: ModelSource): string {
  switch (source.kind) {
    case "file":
      return basename(source.path);
    case "huggingface":
      return source.uri;
    case "url":
      return source.fileName;
  }
}

/** `describeModelSource` for a raw setting, which may not even parse. */
export function describeModelSetting(value: string): string {
  try {
    return describeModelSource(parseModelSource(value));
  } catch {
    return ANY_SCHEME.test(value) ? "(an invalid URL)" : value;
  }
}

/** Strips query strings, fragments and credentials from every URL in a text (error messages quote URLs). */
export function withoutUrlSecrets(text: string): string {
  // scheme, [credentials@], host and path, [?query or #fragment], trailing punctuation that belongs to the sentence.
  return text.replace(/\b(https?:\/\/)(?:[^\s/?#@]*@)?([^\s?#]*)(?:[?#]\S*?)?([,.;:)\]]*)(?=\s|$)/gi, "$1$2$3");
}

/** A URL as it may be shown: no credentials, query or fragment (a signed URL's signature is a secret). */
export function displayUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`;
}

function safeFileName(segment: string): string {
  let name: string;
  try {
    name = decodeURIComponent(segment);
  } catch {
    name = segment;
  }
  name = name.replace(/[^\w.+-]/g, "_");
  return /^\.*$/.test(name) ? "" : name;
}
