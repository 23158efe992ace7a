import { createHash } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import { ArtifactFormatError } from "./errors.js";
import { ARTIFACT_LIMITS } from "./limits.js";
import { quote } from "./printable.js";
import { readEntry, type TarEntry } from "./tar-entries.js";

export const INDEX_MEDIA_TYPES: ReadonlySet<string> = new Set([
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
]);
export const MANIFEST_MEDIA_TYPES: ReadonlySet<string> = new Set([
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
]);

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations: Record<string, string>;
  platform?: { os: string; architecture: string; variant?: string };
}

const DIGEST = /^sha256:[a-f0-9]{64}$/;

/** Reads a JSON document from the layout, bounded, and (for blobs) checks its sha256 against its name. */
export async function readJsonEntry(
  handle: FileHandle,
  entries: ReadonlyMap<string, TarEntry>,
  name: string,
  expected?: { digest: string; size: number },
): Promise<unknown> {
  const entry = entries.get(name);
  if (!entry) throw new ArtifactFormatError(`missing ${name}`);
  if (entry.size > ARTIFACT_LIMITS.maxJsonBytes) {
    throw new ArtifactFormatError(
      `${name} is ${entry.size} bytes, over the ${ARTIFACT_LIMITS.maxJsonBytes}-byte limit`,
    );
  }
  if (expected && entry.size !== expected.size) {
    throw new ArtifactFormatError(`${name} is ${entry.size} bytes but its descriptor says ${expected.size}`);
  }
  const body = await readEntry(handle, entry);
  if (expected) {
    const actual = `sha256:${createHash("sha256").update(body).digest("hex")}`;
    if (actual !== expected.digest) throw new ArtifactFormatError(`${name} does not match its digest`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(body);
  } catch (error) {
    throw new ArtifactFormatError(`${name} is not valid UTF-8`, { cause: error });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new ArtifactFormatError(`${name} is not valid JSON`, { cause: error });
  }
}

export function blobName(digest: string): string {
  return `blobs/sha256/${digest.slice("sha256:".length)}`;
}

/** Checks that a descriptor's blob is in the archive with the declared size, without reading it. */
export function requireBlob(
  entries: ReadonlyMap<string, TarEntry>,
  descriptor: Descriptor,
  what: string,
): void {
  const entry = entries.get(blobName(descriptor.digest));
  if (!entry) throw new ArtifactFormatError(`${what} ${descriptor.digest} is not in the archive`);
  if (entry.size !== descriptor.size) {
    throw new ArtifactFormatError(
      `${what} ${descriptor.digest} is ${entry.size} bytes but its descriptor says ${descriptor.size}`,
    );
  }
}

export function parseDescriptor(value: unknown, where: string): Descriptor {
  const object = asObject(value, where);
  const { mediaType, digest, size } = object;
  if (typeof mediaType !== "string" || mediaType.length === 0 || mediaType.length > 256) {
    throw new ArtifactFormatError(`${where}: invalid mediaType`);
  }
  if (typeof digest !== "string" || !DIGEST.test(digest)) {
    throw new ArtifactFormatError(`${where}: invalid or unsupported digest (sha256 expected)`);
  }
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
    throw new ArtifactFormatError(`${where}: invalid size`);
  }
  const descriptor: Descriptor = {
    mediaType,
    digest,
    size,
    annotations: parseAnnotations(object.annotations, where),
  };
  const platform = object.platform;
  if (platform !== undefined) {
    const p = asObject(platform, `${where}.platform`);
    if (typeof p.os === "string" && typeof p.architecture === "string") {
      descriptor.platform = { os: p.os, architecture: p.architecture };
      if (typeof p.variant === "string") descriptor.platform.variant = p.variant;
    }
  }
  return descriptor;
}

export function parseAnnotations(value: unknown, where: string): Record<string, string> {
  if (value === undefined) return {};
  const object = asObject(value, `${where}.annotations`);
  const annotations: Record<string, string> = {};
  for (const [key, entry] of Object.entries(object)) {
    if (typeof entry !== "string")
      throw new ArtifactFormatError(`${where}: annotation ${quote(key)} is not a string`);
    annotations[key] = entry;
  }
  return annotations;
}

export function parseDescriptorList(value: unknown, where: string): Descriptor[] {
  if (!Array.isArray(value)) throw new ArtifactFormatError(`${where} is not an array`);
  if (value.length > ARTIFACT_LIMITS.maxDescriptors) {
    throw new ArtifactFormatError(`${where} has more than ${ARTIFACT_LIMITS.maxDescriptors} entries`);
  }
  return value.map((item, i) => parseDescriptor(item, `${where}[${i}]`));
}

export function asObject(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ArtifactFormatError(`${where} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

const ARCH: Record<string, string> = {
  x64: "amd64",
  arm64: "arm64",
  arm: "arm",
  ppc64: "ppc64le",
  s390x: "s390x",
};

/**
 * Picks the image an index stands for: its only image entry, else the entry for this host's
 * platform, else linux/amd64. Attestation manifests (buildx provenance) are never images to run.
 */
export function selectImage(manifests: Descriptor[], where: string): Descriptor {
  const images = manifests.filter(
    (d) =>
      d.annotations["vnd.docker.reference.type"] !== "attestation-manifest" &&
      !(d.platform?.os === "unknown" && d.platform.architecture === "unknown"),
  );
  if (images.length === 1) return images[0]!;
  if (images.length === 0) throw new ArtifactFormatError(`${where} lists no image`);
  const hostArch = ARCH[process.arch] ?? process.arch;
  const match = (arch: string) =>
    images.find((d) => d.platform?.os === "linux" && d.platform.architecture === arch);
  const chosen = match(hostArch) ?? match("amd64");
  if (!chosen)
    throw new ArtifactFormatError(`${where} lists ${images.length} images and none for linux/${hostArch}`);
  return chosen;
}
