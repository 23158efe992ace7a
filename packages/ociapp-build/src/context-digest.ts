import { createHash } from "node:crypto";
import { readdir, readFile, stat } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { readArtifactIndex } from "ociapp/artifact";

/**
 * The manifest annotation recording the digest of the build context an artifact was built from.
 * In the image manifest, so that the artifact carries it (a copy or a replaced file cannot disagree
 * with it); the same inputs give the same digest, so it never makes two identical builds differ.
 */
export const CONTEXT_ANNOTATION = "dev.ociapp.build.context";

/** Bump when what goes into the digest changes meaning. */
const FORMAT = "ociapp-build context 1";

export interface ContextInputs {
  /** the staging folder: every file in it (the rendered Containerfile included), but `exclude`'s */
  stagingDir: string;
  /** top-level entries of stagingDir that are no input (an empty folder) */
  exclude: string[];
  /** ociapp-build's own version: a new version may build the same inputs differently */
  toolVersion: string;
  baseImage: string;
  /** the engine's ID of the base image */
  baseImageId: string;
  /** every option and annotation that reaches buildx's output (compression, image, annotations, ...) */
  settings: Record<string, string>;
}

/**
 * sha256 over the inputs of a managed build, as "sha256:<hex>": the format, the tool's version, the
 * base image's reference and ID, the settings (sorted by key) and, sorted by path, each staged file's
 * relative path, permission bits and content hash. Symbolic links and other non-regular files are
 * hashed as their kind (the staging folder holds none).
 */
export async function contextDigest(inputs: ContextInputs): Promise<string> {
  const hash = createHash("sha256");
  const field = (...parts: string[]) => {
    for (const part of parts) hash.update(`${part.length}:${part}`);
  };
  field(FORMAT, inputs.toolVersion, inputs.baseImage, inputs.baseImageId);
  for (const key of Object.keys(inputs.settings).sort()) field(key, inputs.settings[key] ?? "");
  const entries = await readdir(inputs.stagingDir, { recursive: true, withFileTypes: true });
  const files: { path: string; full: string; isFile: boolean }[] = [];
  for (const entry of entries) {
    const full = join(entry.parentPath, entry.name);
    const path = relative(inputs.stagingDir, full).split(sep).join("/");
    if (inputs.exclude.includes(path.split("/")[0] ?? "")) continue;
    if (entry.isDirectory()) continue;
    files.push({ path, full, isFile: entry.isFile() });
  }
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  for (const file of files) {
    if (!file.isFile) {
      field("other", file.path);
      continue;
    }
    const { mode } = await stat(file.full);
    const content = createHash("sha256")
      .update(await readFile(file.full))
      .digest("hex");
    field("file", file.path, (mode & 0o7777).toString(8), content);
  }
  return `sha256:${hash.digest("hex")}`;
}

/**
 * The artifact at `path` when it was built from the build context `digest`, read from its index and
 * manifest only (no layer is read): its digest and size. undefined when the file is missing, is not
 * an artifact, or records another context (or none).
 */
export async function reusableArtifact(
  path: string,
  digest: string,
  signal?: AbortSignal,
): Promise<{ digest: string; bytes: number } | undefined> {
  try {
    const index = await readArtifactIndex(path, signal ? { signal } : {});
    if (index.annotations[CONTEXT_ANNOTATION] !== digest) return undefined;
    const { size } = await stat(path);
    return { digest: index.digest, bytes: size };
  } catch {
    signal?.throwIfAborted();
    return undefined;
  }
}
