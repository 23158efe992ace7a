import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { ARTIFACT_LIMITS } from "ociapp/artifact";
import tar from "tar-stream";
import { ArtifactError } from "../errors.js";
import { BlobFormatError, createBlobMeter } from "./blob-meter.js";

/**
 * Rewrites an artifact (an OCI image-layout tarball) into the stream an engine's `POST /images/load`
 * gets, while it streams (tar-stream: one pass, no temporary file):
 *
 * - Only blobs pass through: regular files named `blobs/sha256/<hex>`, each checked against its name
 *   (sha256) as it passes and measured (what it unpacks to) on the side. Everything else the artifact
 *   holds is dropped: its index.json and oci-layout, and any docker-archive `manifest.json` or
 *   `repositories` file, links and devices. Those are where names live: an artifact never names an
 *   image in the engine.
 * - After the last blob come the runtime's own `index.json` (one descriptor, the artifact's image
 *   manifest, annotated `io.containerd.image.name` = the runtime's name; no
 *   `org.opencontainers.image.ref.name`) and `oci-layout` (OCI image-layout spec, "index.json" and
 *   "oci-layout file"), and, for engines whose loader reads only the docker-archive format (Docker's
 *   classic image store), a `manifest.json` naming the config, the layers and `RepoTags` = that name.
 *   Nothing names the image before every blob has passed its checks.
 * - The manifest blob is kept (bounded) to learn the config digest and the layers, which must all be
 *   in the archive: an artifact is self-contained.
 *
 * A failure (budget passed, a blob that does not match its name, a malformed archive) destroys the
 * stream, so the engine sees a truncated upload, and rejects `result` with ArtifactError.
 */

export interface LoadStreamOptions {
  /** The artifact's path, for error messages. */
  path: string;
  /** The artifact's identity: the digest of its image manifest ("sha256:..."). */
  manifestDigest: string;
  /** The reference the engine is to give the image (a runtime-owned name). */
  imageName: string;
  /** Append a docker-archive manifest.json (Docker's classic image store reads nothing else). */
  dockerArchive: boolean;
  /** Most bytes the blobs may unpack to in total, measured while streaming. */
  maxUnpackedBytes: number;
  /** false skips the measurement (and so the budget): only bench/image-load.ts, to price it. */
  measure?: boolean;
}

export interface LoadStreamResult {
  /** The image config's digest: the image ID on the classic store and on Podman. */
  configDigest: string;
  layerDigests: string[];
  /** What the blobs unpack to: layers decompressed, other blobs as they are. */
  unpackedBytes: number;
}

const BLOB_NAME = /^(?:\.\/)?blobs\/sha256\/([a-f0-9]{64})$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const EPOCH = new Date(0);
const NO_METER = { write: async () => undefined, end: async () => undefined, destroy: () => undefined };

/** Starts the rewrite of `source`; `stream` is the body for the engine, `result` settles at its end. */
export function createLoadStream(
  source: Readable,
  options: LoadStreamOptions,
): { stream: Readable; result: Promise<LoadStreamResult> } {
  const extract = tar.extract();
  const pack = tar.pack();
  source.on("error", (error) => extract.destroy(error));
  source.pipe(extract);
  const stream = Readable.from(pack as AsyncIterable<Buffer>, { objectMode: false });
  const result = rewrite(extract, pack, options).catch((error: unknown) => {
    const failure = asArtifactError(error, options.path);
    pack.destroy(failure);
    extract.destroy(failure);
    source.destroy();
    throw failure;
  });
  return { stream, result };
}

async function rewrite(
  extract: tar.Extract,
  pack: tar.Pack,
  options: LoadStreamOptions,
): Promise<LoadStreamResult> {
  const { path, manifestDigest, maxUnpackedBytes } = options;
  let unpackedBytes = 0;
  const budget = (bytes: number) => {
    unpackedBytes += bytes;
    if (unpackedBytes > maxUnpackedBytes) {
      throw new ArtifactError(
        path,
        `${path} unpacks to more than ${maxUnpackedBytes} bytes (maxUnpackedBytes); refused while loading`,
      );
    }
  };
  const seen = new Set<string>();
  let manifestBytes: Buffer | undefined;
  let entries = 0;
  await addEntry(pack, { name: "blobs/", type: "directory", mode: 0o755, mtime: EPOCH });
  await addEntry(pack, { name: "blobs/sha256/", type: "directory", mode: 0o755, mtime: EPOCH });
  for await (const entry of extract) {
    if (++entries > ARTIFACT_LIMITS.maxEntries) {
      throw new ArtifactError(path, `${path} has more than ${ARTIFACT_LIMITS.maxEntries} tar entries`);
    }
    const { name, type, size } = entry.header;
    const blob = type === "file" ? BLOB_NAME.exec(name) : null;
    if (!blob) {
      for await (const _ of entry) {
        // Not passed on (see above); read past it.
      }
      continue;
    }
    const hex = blob[1] as string;
    const digest = `sha256:${hex}`;
    if (seen.has(digest)) throw new ArtifactError(path, `${path} holds blob ${digest} twice`);
    seen.add(digest);
    const isManifest = digest === manifestDigest;
    if (isManifest && (size ?? 0) > ARTIFACT_LIMITS.maxJsonBytes) {
      throw new ArtifactError(
        path,
        `the image manifest of ${path} is over ${ARTIFACT_LIMITS.maxJsonBytes} bytes`,
      );
    }
    const hash = createHash("sha256");
    const meter = options.measure === false ? NO_METER : createBlobMeter(budget);
    const kept: Buffer[] = [];
    const sink = pack.entry({ name: `blobs/sha256/${hex}`, size: size ?? 0, mode: 0o444, mtime: EPOCH });
    const written = entryDone(sink);
    // Awaited below; when this blob fails first, the pack's destruction rejects it unobserved.
    written.catch(() => undefined);
    try {
      for await (const chunk of entry as AsyncIterable<Buffer>) {
        hash.update(chunk);
        await meter.write(chunk);
        if (isManifest) kept.push(chunk);
        if (!sink.write(chunk)) await waitDrain(sink);
      }
      await meter.end();
    } catch (error) {
      meter.destroy();
      if (error instanceof BlobFormatError) {
        throw new ArtifactError(path, `blob ${digest} of ${path} cannot be unpacked: ${error.message}`);
      }
      throw error;
    }
    if (hash.digest("hex") !== hex) {
      throw new ArtifactError(path, `blob ${digest} of ${path} does not match its digest`);
    }
    sink.end();
    await written;
    if (isManifest) manifestBytes = Buffer.concat(kept);
  }
  if (!manifestBytes) {
    throw new ArtifactError(path, `${path} has no blob for its image manifest ${manifestDigest}`);
  }
  const manifest = parseManifest(manifestBytes, path);
  for (const [what, digest] of [
    ["config", manifest.config] as const,
    ...manifest.layers.map((layer) => ["layer", layer] as const),
  ]) {
    if (!seen.has(digest)) throw new ArtifactError(path, `${path} lacks its ${what} blob ${digest}`);
  }
  const index = {
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [
      {
        mediaType: manifest.mediaType,
        digest: manifestDigest,
        size: manifestBytes.length,
        annotations: { "io.containerd.image.name": options.imageName },
      },
    ],
  };
  await addEntry(pack, { name: "index.json", mode: 0o644, mtime: EPOCH }, JSON.stringify(index));
  await addEntry(pack, { name: "oci-layout", mode: 0o644, mtime: EPOCH }, '{"imageLayoutVersion":"1.0.0"}');
  if (options.dockerArchive) {
    // Docker's legacy loader (image/tarexport): Config and Layers are paths in the archive.
    const archive = [
      {
        Config: `blobs/sha256/${manifest.config.slice(7)}`,
        RepoTags: [options.imageName],
        Layers: manifest.layers.map((layer) => `blobs/sha256/${layer.slice(7)}`),
      },
    ];
    await addEntry(pack, { name: "manifest.json", mode: 0o644, mtime: EPOCH }, JSON.stringify(archive));
  }
  pack.finalize();
  return { configDigest: manifest.config, layerDigests: manifest.layers, unpackedBytes };
}

interface ParsedManifest {
  mediaType: string;
  config: string;
  layers: string[];
}

function parseManifest(bytes: Buffer, path: string): ParsedManifest {
  const bad = (why: string) => new ArtifactError(path, `the image manifest of ${path} ${why}`);
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString("utf8"));
  } catch {
    throw bad("is not JSON");
  }
  const manifest = value as { mediaType?: unknown; config?: { digest?: unknown }; layers?: unknown };
  if (typeof manifest !== "object" || manifest === null) throw bad("is not a JSON object");
  const config = manifest.config?.digest;
  if (typeof config !== "string" || !DIGEST.test(config)) throw bad("has no valid config digest");
  if (!Array.isArray(manifest.layers) || manifest.layers.length > ARTIFACT_LIMITS.maxDescriptors) {
    throw bad("has no valid layer list");
  }
  const layers = manifest.layers.map((layer: { digest?: unknown } | null) => {
    const digest = layer?.digest;
    if (typeof digest !== "string" || !DIGEST.test(digest)) throw bad("has a layer without a valid digest");
    return digest;
  });
  const mediaType = typeof manifest.mediaType === "string" ? manifest.mediaType : OCI_MANIFEST;
  return { mediaType, config, layers };
}

function addEntry(pack: tar.Pack, header: tar.Headers, body?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (error?: Error | null) => (error ? reject(error) : resolve());
    if (body === undefined) pack.entry(header, done);
    else pack.entry(header, body, done);
  });
}

type Sink = ReturnType<tar.Pack["entry"]>;

function entryDone(sink: Sink): Promise<void> {
  return new Promise((resolve, reject) => {
    sink.on("finish", resolve);
    sink.on("close", resolve);
    sink.on("error", reject);
  });
}

function waitDrain(sink: Sink): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = () => {
      sink.off("drain", done);
      sink.off("close", done);
      sink.off("error", fail);
      resolve();
    };
    const fail = (error: Error) => {
      sink.off("drain", done);
      sink.off("close", done);
      reject(error);
    };
    sink.on("drain", done);
    sink.on("close", done);
    sink.on("error", fail);
  });
}

function asArtifactError(error: unknown, path: string): ArtifactError {
  if (error instanceof ArtifactError) return error;
  const code = (error as NodeJS.ErrnoException)?.code;
  const message = error instanceof Error ? error.message : String(error);
  if (code === "ENOENT" || code === "EISDIR" || code === "EACCES") {
    return new ArtifactError(path, `cannot read ${path}: ${message}`, { cause: error });
  }
  return new ArtifactError(path, `${path} is not a loadable image layout: ${message}`, { cause: error });
}
