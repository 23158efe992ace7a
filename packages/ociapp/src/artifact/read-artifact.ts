import type { FileHandle } from "node:fs/promises";
import { ArtifactFormatError } from "./errors.js";
import { ARTIFACT_LIMITS } from "./limits.js";
import {
  asObject,
  blobName,
  type Descriptor,
  INDEX_MEDIA_TYPES,
  MANIFEST_MEDIA_TYPES,
  parseAnnotations,
  parseDescriptor,
  parseDescriptorList,
  readJsonEntry,
  requireBlob,
  selectImage,
} from "./oci-layout.js";
import { openArtifact } from "./open-artifact.js";
import { quote } from "./printable.js";
import { listTarEntries, type TarEntry } from "./tar-entries.js";

/** The manifest annotation ociapp-build records the packed SDK's wire protocol in ("2"). */
export const PROTOCOL_ANNOTATION = "dev.ociapp.protocol";

export interface ArtifactIndex {
  /** "sha256:..." of the image manifest index.json points at (through nested indexes): the artifact's identity */
  digest: string;
  mediaType: string;
  size: number;
  /** io.containerd.image.name, else org.opencontainers.image.ref.name, from index.json */
  refName?: string;
  /** the image manifest's annotations */
  annotations: Record<string, string>;
  /**
   * The wire protocol the image's `ociapp serve` speaks, from the dev.ociapp.protocol annotation;
   * absent when the build did not record one (a custom image whose project has no SDK installed):
   * then only the container's hello tells.
   */
  protocol?: number;
}

export interface ArtifactLayer {
  digest: string;
  size: number;
  mediaType: string;
}

export interface ArtifactInfo extends ArtifactIndex {
  /** size of the .ociapp file */
  bytes: number;
  title?: string;
  version?: string;
  entrypoint?: string;
  layers: ArtifactLayer[];
}

export interface ReadArtifactOptions {
  signal?: AbortSignal;
}

/**
 * Reads an artifact's identity and its image manifest's annotations (the protocol among them) without
 * reading any layer: one small positional read per tar entry, then index.json (and a nested index if
 * the top one points at one) and the image manifest, each at most ARTIFACT_LIMITS.maxJsonBytes, the
 * manifest checked against its digest. What a runtime reads before it starts a container.
 */
export async function readArtifactIndex(
  path: string,
  options: ReadArtifactOptions = {},
): Promise<ArtifactIndex> {
  return withLayout(path, options.signal, async (layout) => (await readManifest(layout)).index);
}

/** Everything `ociapp-build inspect` shows: the identity plus the manifest's annotations and layers. */
export async function inspectArtifact(
  path: string,
  options: ReadArtifactOptions = {},
): Promise<ArtifactInfo> {
  return withLayout(path, options.signal, async (layout) => {
    const { index, manifest } = await readManifest(layout);
    const config = parseDescriptor(manifest.config, "image manifest config");
    requireBlob(layout.entries, config, "image config");
    const layers = parseDescriptorList(manifest.layers, "image manifest layers");
    for (const layer of layers) requireBlob(layout.entries, layer, "layer");
    const { annotations } = index;
    const info: ArtifactInfo = {
      ...index,
      bytes: layout.bytes,
      layers: layers.map(({ digest, size, mediaType }) => ({ digest, size, mediaType })),
    };
    const title = annotations["org.opencontainers.image.title"];
    const version = annotations["org.opencontainers.image.version"];
    const entrypoint = annotations["dev.ociapp.entrypoint"];
    if (title !== undefined) info.title = title;
    if (version !== undefined) info.version = version;
    if (entrypoint !== undefined) info.entrypoint = entrypoint;
    return info;
  });
}

interface Layout {
  handle: FileHandle;
  entries: Map<string, TarEntry>;
  bytes: number;
}

async function withLayout<T>(
  path: string,
  signal: AbortSignal | undefined,
  read: (layout: Layout) => Promise<T>,
): Promise<T> {
  // A regular file or an ArtifactFileError at once (a FIFO would block a plain open forever); every
  // read below goes through this handle, never the path again.
  const handle = await openArtifact(path, signal ? { signal } : {});
  try {
    const stats = await handle.stat();
    const entries = await listTarEntries(handle, stats.size, signal);
    if (!entries.has("oci-layout"))
      throw new ArtifactFormatError("not an OCI image layout: no oci-layout file");
    const result = await read({ handle, entries, bytes: stats.size });
    signal?.throwIfAborted();
    return result;
  } finally {
    await handle.close();
  }
}

/** The image manifest (verified against its digest) and the identity and annotations it gives. */
async function readManifest(
  layout: Layout,
): Promise<{ index: ArtifactIndex; manifest: Record<string, unknown> }> {
  const { descriptor, refName } = await resolveManifest(layout);
  const manifest = asObject(
    await readJsonEntry(layout.handle, layout.entries, blobName(descriptor.digest), descriptor),
    "image manifest",
  );
  const annotations = parseAnnotations(manifest.annotations, "image manifest");
  const index: ArtifactIndex = {
    digest: descriptor.digest,
    mediaType: descriptor.mediaType,
    size: descriptor.size,
    annotations,
  };
  if (refName !== undefined) index.refName = refName;
  const protocol = parseProtocol(annotations[PROTOCOL_ANNOTATION]);
  if (protocol !== undefined) index.protocol = protocol;
  return { index, manifest };
}

/** A protocol version is a positive decimal integer: anything else in our annotation is a broken artifact. */
function parseProtocol(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[1-9][0-9]{0,8}$/.test(value)) {
    throw new ArtifactFormatError(
      `image manifest: annotation ${PROTOCOL_ANNOTATION} is ${quote(value, 40)}, not a protocol version`,
    );
  }
  return Number(value);
}

/** Follows index.json (and nested indexes, which multi-platform builds write) to one image manifest. */
async function resolveManifest(
  layout: Layout,
): Promise<{ descriptor: Descriptor; refName: string | undefined }> {
  const top = asObject(await readJsonEntry(layout.handle, layout.entries, "index.json"), "index.json");
  if (top.schemaVersion !== 2) throw new ArtifactFormatError("index.json: schemaVersion is not 2");
  const first = selectImage(parseDescriptorList(top.manifests, "index.json manifests"), "index.json");
  // containerd's full name ("docker.io/library/echo-app:0.1.0") says more than the OCI ref name,
  // which buildx sets to the tag alone.
  const refName =
    first.annotations["io.containerd.image.name"] ?? first.annotations["org.opencontainers.image.ref.name"];

  let descriptor = first;
  for (let depth = 0; INDEX_MEDIA_TYPES.has(descriptor.mediaType); depth++) {
    if (depth >= ARTIFACT_LIMITS.maxIndexDepth)
      throw new ArtifactFormatError("image indexes nest too deeply");
    const nested = asObject(
      await readJsonEntry(layout.handle, layout.entries, blobName(descriptor.digest), descriptor),
      `image index ${descriptor.digest}`,
    );
    const where = `image index ${descriptor.digest}`;
    descriptor = selectImage(parseDescriptorList(nested.manifests, `${where} manifests`), where);
  }
  if (!MANIFEST_MEDIA_TYPES.has(descriptor.mediaType)) {
    throw new ArtifactFormatError(
      `index.json points at ${quote(descriptor.mediaType)}, not an image manifest`,
    );
  }
  requireBlob(layout.entries, descriptor, "image manifest");
  return { descriptor, refName };
}
