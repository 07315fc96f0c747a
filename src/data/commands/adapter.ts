/**
 * `friend adapter import` and `friend adapter inspect`: a PEFT LoRA into the GGUF adapter Friend
 * loads (src/adapters/), and a look inside either.
 */
import { basename, resolve } from "node:path";
import { readBaseModelShape, shapeFromGgufMetadata, type BaseModelShape } from "../../adapters/base-model.ts";
import { AdapterError } from "../../adapters/errors.ts";
import { ADAPTER_OUT_TYPES, importPeftAdapter, type AdapterOutType } from "../../adapters/import.ts";
import { inspectAdapter, inspectionLines } from "../../adapters/inspect.ts";
import { LOCAL_DEFAULTS } from "../../config/local-defaults.ts";
import { describeModelSource, parseModelSource } from "../../core/model-source.ts";
import { CommandError, UsageError } from "../../commandline/errors.ts";
import { envWithDotenv, type CommandIo } from "../../commandline/io.ts";
import { parseCommandArgs } from "../../commandline/args.ts";

export const ADAPTER_IMPORT_USAGE = `Usage: friend adapter import PEFT_DIR --base BASE [--out adapters/NAME.gguf] [--outtype ${ADAPTER_OUT_TYPES.join("|")}]

Turns a PEFT LoRA adapter (the folder save_pretrained writes: adapter_config.json and
adapter_model.safetensors) into the GGUF adapter llama.cpp and Friend load, as llama.cpp's
convert_lora_to_gguf.py would, checked against the base model first.

  PEFT_DIR         the folder, or hf:user/repo of an adapter repository (its two files are
                   downloaded into ${LOCAL_DEFAULTS.adaptersDir}/hf_USER_REPO/ once)
  --base BASE      the base model it will run on: its GGUF (a path, an hf: URI or a URL: only its
                   metadata is read, from ${LOCAL_DEFAULTS.modelsDir}/ if downloaded there), or its Hugging Face config.json
  --out FILE       where to write (default: ${LOCAL_DEFAULTS.adaptersDir}/<PEFT_DIR's name>.gguf)
  --outtype TYPE   tensor type: f32 (default, as the Python converter), f16, bf16 or q8_0`;

export const ADAPTER_INSPECT_USAGE = `Usage: friend adapter inspect FILE_OR_DIR

Shows what a GGUF LoRA adapter or a PEFT adapter folder holds: rank, alpha and the scale they
make, the target modules, the base model it names, its size and dtypes.`;

export async function runAdapterImport(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, { base: { type: "string" }, out: { type: "string" }, outtype: { type: "string" } }, 1);
  if (values.help) {
    io.out(ADAPTER_IMPORT_USAGE);
    return 0;
  }
  const [peftArg] = positionals;
  if (!peftArg) throw new UsageError("give the PEFT adapter folder: friend adapter import PEFT_DIR --base BASE");
  if (!values.base) throw new UsageError("--base is required: the GGUF model the adapter will run on (or its config.json), so the import can check that the adapter fits it");
  const outType = (values.outtype ?? "f32") as AdapterOutType;
  if (!ADAPTER_OUT_TYPES.includes(outType)) throw new UsageError(`--outtype must be ${ADAPTER_OUT_TYPES.join(", ")}, not "${values.outtype}"`);
  const repo = await peftRepositoryOf(peftArg);
  const defaultName = repo ? repo.name : basename(resolve(io.cwd, peftArg));
  const out = resolve(io.cwd, values.out ?? `${LOCAL_DEFAULTS.adaptersDir}/${defaultName}.gguf`);
  if (!out.endsWith(".gguf")) throw new UsageError(`--out must name a .gguf file, not "${values.out}"`);

  try {
    const base = await baseShape(values.base, io);
    const peftDir = repo ? await downloadRepository(repo, io) : resolve(io.cwd, peftArg);
    const imported = await importPeftAdapter({ peftDir, base, out, outType, ...(repo ? { nameHint: repo.name } : {}) });
    io.out(`wrote ${values.out ?? `${LOCAL_DEFAULTS.adaptersDir}/${basename(out)}`} (${imported.pairs} LoRA pairs, ${outType}, ${formatBytes(imported.bytes)})`);
    io.out(`checked against ${base.source}: ${base.architecture}, ${base.blockCount} layers, width ${base.hiddenSize}, ${base.headCount} heads (${base.headCountKv} key/value)`);
    for (const note of imported.notes) io.out(`note: ${note}`);
    return 0;
  } catch (err) {
    if (err instanceof AdapterError) throw new CommandError(err.message);
    throw err;
  }
}

export async function runAdapterInspect(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {}, 1);
  if (values.help) {
    io.out(ADAPTER_INSPECT_USAGE);
    return 0;
  }
  const [target] = positionals;
  if (!target) throw new UsageError("give a GGUF adapter or a PEFT adapter folder: friend adapter inspect FILE_OR_DIR");
  try {
    const inspection = await inspectAdapter(resolve(io.cwd, target));
    for (const line of inspectionLines({ ...inspection, path: target }, formatBytes)) io.out(line);
    return 0;
  } catch (err) {
    if (err instanceof AdapterError) throw new CommandError(err.message);
    throw err;
  }
}

/** An `hf:user/repo` PEFT_DIR, parsed; undefined for a folder. Any other hf: form is refused. */
async function peftRepositoryOf(arg: string) {
  if (!/^(?:hf|huggingface):/i.test(arg)) return undefined;
  const { peftRepository } = await import("../../backends/local/peft-adapter.ts");
  const repo = peftRepository(arg);
  if (!repo) throw new UsageError(`"${arg}" is not a PEFT adapter repository: give it as hf:user/repo (no tag, no file)`);
  return repo;
}

/** Downloads a PEFT repository's files into adapters/hf_USER_REPO/ (once), with progress lines on stderr. */
async function downloadRepository(repo: NonNullable<Awaited<ReturnType<typeof peftRepositoryOf>>>, io: CommandIo): Promise<string> {
  const { downloadPeftRepository } = await import("../../backends/local/peft-adapter.ts");
  const env = envWithDotenv(io, ".env");
  let last = "";
  return downloadPeftRepository(repo, {
    adaptersDir: resolve(io.cwd, LOCAL_DEFAULTS.adaptersDir),
    huggingFaceToken: env.HF_TOKEN || undefined,
    stallMs: LOCAL_DEFAULTS.downloadStallS * 1000,
    deadlineMs: LOCAL_DEFAULTS.downloadTimeoutS * 1000,
    signal: io.interrupt,
    onProgress: (_, text) => {
      // One line per file and tenth: a terminal bar would tear the one-line-per-event output.
      const coarse = text.replace(/\((\d+)%\)$/, (_m, p: string) => `(${Math.floor(Number(p) / 10) * 10}%)`);
      if (coarse !== last) io.err((last = coarse));
    },
  }).catch((err: unknown) => {
    throw new CommandError((err as Error).message);
  });
}

/**
 * The base's shapes: from a local file as it is; for an hf: URI or URL, from the copy in models/
 * if Friend downloaded it already, else from its metadata alone, read over the network.
 */
async function baseShape(value: string, io: CommandIo): Promise<BaseModelShape> {
  let source;
  try {
    source = parseModelSource(value);
  } catch (err) {
    throw new UsageError(`--base ${(err as Error).message}`);
  }
  if (source.kind === "file") return readBaseModelShape(resolve(io.cwd, source.path));
  const { readModelMetadata } = await import("../../backends/local/model-download.ts");
  const env = envWithDotenv(io, ".env");
  const metadata = await readModelMetadata(source, {
    directory: resolve(io.cwd, LOCAL_DEFAULTS.modelsDir),
    huggingFaceToken: env.HF_TOKEN || undefined,
    signal: io.interrupt,
  }).catch((err: unknown) => {
    throw new CommandError(`--base: ${(err as Error).message}`);
  });
  return "localFile" in metadata ? readBaseModelShape(metadata.localFile) : shapeFromGgufMetadata(metadata.lookup, describeModelSource(source));
}

function formatBytes(bytes: number): string {
  return bytes < 1e6 ? `${(bytes / 1e3).toFixed(1)} KB` : bytes < 1e9 ? `${(bytes / 1e6).toFixed(1)} MB` : `${(bytes / 1e9).toFixed(2)} GB`;
}
