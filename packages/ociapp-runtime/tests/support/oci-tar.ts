import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import tar from "tar-stream";

// Small OCI image-layout tarballs made in the tests (no engine, no network), and rewrites of real
// artifacts (a blob corrupted, an annotation changed).

export const sha256 = (bytes: Buffer | string): string =>
  `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
export const blobPath = (digest: string): string => `blobs/sha256/${digest.slice("sha256:".length)}`;

export interface TarEntry {
  name: string;
  body?: Buffer | string;
  type?: "file" | "directory" | "symlink";
  linkname?: string;
}

export async function tarOf(entries: TarEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on("data", (chunk: Buffer) => chunks.push(chunk));
  const ended = new Promise((resolve) => pack.on("end", resolve));
  for (const entry of entries) {
    const header: tar.Headers = { name: entry.name, mtime: new Date(0), type: entry.type ?? "file" };
    if (entry.linkname) header.linkname = entry.linkname;
    pack.entry(header, entry.type === "file" || entry.type === undefined ? (entry.body ?? "") : undefined);
  }
  pack.finalize();
  await ended;
  return Buffer.concat(chunks);
}

/** Reads every regular file of a tarball into memory (small test tarballs only). */
export async function untar(bytes: Buffer): Promise<Map<string, Buffer>> {
  const extract = tar.extract();
  const files = new Map<string, Buffer>();
  const done = (async () => {
    for await (const entry of extract) {
      const chunks: Buffer[] = [];
      for await (const chunk of entry as AsyncIterable<Buffer>) chunks.push(chunk);
      if (entry.header.type === "file") files.set(entry.header.name, Buffer.concat(chunks));
    }
  })();
  extract.end(bytes);
  await done;
  return files;
}

export interface TinyImage {
  tarball: Buffer;
  manifestDigest: string;
  configDigest: string;
  layerDigests: string[];
}

export interface TinyImageOptions {
  /** Layer blobs as they go into the archive (compressed or not); default one small random tar. */
  layers?: Buffer[];
  /** diff_ids for the config; default the sha256 of each layer as given (right for uncompressed). */
  diffIds?: string[];
  /** index.json annotations; default names the image ociapp-test/tiny:1. */
  annotations?: Record<string, string>;
  /** Entries added after index.json (a docker-archive manifest.json, a symlink...). */
  extra?: TarEntry[];
  /** Replaces a blob's bytes in the archive (its name kept): a corrupted copy. */
  corrupt?: (digest: string, body: Buffer) => Buffer;
  /** Leaves these blobs out of the archive. */
  omit?: string[];
}

/** A random small uncompressed layer (a tar with one file): bytes no engine has seen. */
export async function randomLayer(bytes = 4096): Promise<Buffer> {
  return tarOf([{ name: "random.bin", body: randomBytes(bytes) }]);
}

export async function tinyImage(options: TinyImageOptions = {}): Promise<TinyImage> {
  const layers = options.layers ?? [await randomLayer()];
  const config = Buffer.from(
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      config: { Cmd: ["/nothing"] },
      rootfs: { type: "layers", diff_ids: options.diffIds ?? layers.map((layer) => sha256(layer)) },
    }),
  );
  const layerType = (layer: Buffer) =>
    layer[0] === 0x1f && layer[1] === 0x8b
      ? "application/vnd.oci.image.layer.v1.tar+gzip"
      : layer[0] === 0x28 && layer[1] === 0xb5
        ? "application/vnd.oci.image.layer.v1.tar+zstd"
        : "application/vnd.oci.image.layer.v1.tar";
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {
        mediaType: "application/vnd.oci.image.config.v1+json",
        digest: sha256(config),
        size: config.length,
      },
      layers: layers.map((layer) => ({
        mediaType: layerType(layer),
        digest: sha256(layer),
        size: layer.length,
      })),
    }),
  );
  const index = {
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [
      {
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        digest: sha256(manifest),
        size: manifest.length,
        annotations: options.annotations ?? {
          "io.containerd.image.name": "docker.io/ociapp-test/tiny:1",
          "org.opencontainers.image.ref.name": "1",
        },
      },
    ],
  };
  const blobs = [...layers, config, manifest];
  const entries: TarEntry[] = [{ name: "oci-layout", body: '{"imageLayoutVersion":"1.0.0"}' }];
  for (const blob of blobs) {
    const digest = sha256(blob);
    if (options.omit?.includes(digest)) continue;
    entries.push({ name: blobPath(digest), body: options.corrupt ? options.corrupt(digest, blob) : blob });
  }
  entries.push({ name: "index.json", body: JSON.stringify(index) }, ...(options.extra ?? []));
  return {
    tarball: await tarOf(entries),
    manifestDigest: sha256(manifest),
    configDigest: sha256(config),
    layerDigests: layers.map((layer) => sha256(layer)),
  };
}

/** A gzip stream of `bytes` zeros, made chunk by chunk (1 GiB compresses to about 1 MiB). */
export async function gzipZeros(bytes: number): Promise<Buffer> {
  const gzip = createGzip({ level: 9 });
  const chunks: Buffer[] = [];
  gzip.on("data", (chunk: Buffer) => chunks.push(chunk));
  const zeros = Buffer.alloc(1024 * 1024);
  for (let left = bytes; left > 0; left -= zeros.length) {
    if (!gzip.write(left >= zeros.length ? zeros : zeros.subarray(0, left))) {
      await new Promise((resolve) => gzip.once("drain", resolve));
    }
  }
  gzip.end();
  await new Promise((resolve) => gzip.on("end", resolve));
  return Buffer.concat(chunks);
}

const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/**
 * A zstd frame written by hand (RFC 8878): a window descriptor of 2^`windowLog` bytes, then `blocks`
 * (raw: the bytes as they are; rle: one byte repeated). Every zstd decoder reads it.
 */
export function zstdFrame(
  blocks: ({ raw: Buffer<ArrayBufferLike> } | { rle: number; size: number })[],
  windowLog = 17,
): Buffer {
  const parts: Uint8Array[] = [ZSTD_MAGIC, Buffer.from([0x00, (windowLog - 10) << 3])];
  blocks.forEach((block, i) => {
    const last = i === blocks.length - 1 ? 1 : 0;
    const header = Buffer.alloc(3);
    if ("raw" in block) {
      header.writeUIntLE(last | (0 << 1) | (block.raw.length << 3), 0, 3);
      parts.push(header, block.raw);
    } else {
      header.writeUIntLE(last | (1 << 1) | (block.size << 3), 0, 3);
      parts.push(header, Buffer.from([block.rle]));
    }
  });
  return Buffer.concat(parts);
}

/** `data` as one zstd frame of raw blocks (128 KiB each). */
export function zstdRaw(data: Buffer, windowLog = 17): Buffer {
  const blocks: { raw: Buffer }[] = [];
  for (let offset = 0; offset < data.length || blocks.length === 0; offset += 128 * 1024) {
    blocks.push({ raw: data.subarray(offset, offset + 128 * 1024) });
  }
  return zstdFrame(blocks, windowLog);
}

/** `bytes` zeros as RLE blocks: 1 GiB in 32 KiB. */
export function zstdZeros(bytes: number): Buffer {
  const blocks: { rle: number; size: number }[] = [];
  for (let left = bytes; left > 0; left -= 128 * 1024)
    blocks.push({ rle: 0, size: Math.min(left, 128 * 1024) });
  return zstdFrame(blocks);
}

/**
 * Copies a tarball entry by entry, letting `change` replace a file's body (or drop it: null).
 * Streams: fine for a 100 MB artifact.
 */
export async function rewriteTar(
  from: string,
  to: string,
  change: (name: string, body: Buffer) => Buffer | null | undefined,
): Promise<void> {
  const extract = tar.extract();
  const pack = tar.pack();
  const writing = pipeline(pack, createWriteStream(to));
  const reading = pipeline(createReadStream(from), extract);
  for await (const entry of extract) {
    const chunks: Buffer[] = [];
    for await (const chunk of entry as AsyncIterable<Buffer>) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    const changed = entry.header.type === "file" ? change(entry.header.name, body) : undefined;
    if (changed === null) continue;
    const out = changed ?? body;
    await new Promise<void>((resolve, reject) =>
      pack.entry({ ...entry.header, size: out.length }, out, (error) => (error ? reject(error) : resolve())),
    );
  }
  pack.finalize();
  await Promise.all([reading, writing]);
}
