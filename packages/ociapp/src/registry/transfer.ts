import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { open, rm } from "node:fs/promises";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import {
  blobName,
  MANIFEST_MEDIA_TYPES,
  parseDescriptor,
  parseDescriptorList,
} from "../artifact/oci-layout.js";
import { readArtifactIndex } from "../artifact/read-artifact.js";
import { listTarEntries, readEntry } from "../artifact/tar-entries.js";
import type { RegistryClient } from "./client.js";
import { RegistryError } from "./errors.js";

const BLOCK = 512;
const DIGEST = /^sha256:[a-f0-9]{64}$/;

export interface PushOptions {
  /** Also put the manifest under this tag. */
  tag?: string;
  signal?: AbortSignal;
  /** Called once per blob: skipped (the registry has it) or uploaded. */
  onBlob?: (digest: string, size: number, uploaded: boolean) => void;
}

/**
 * Pushes a .ociapp file's image to `repository` (OCI distribution spec): each blob the manifest names
 * (config, then layers) is uploaded unless the registry already has it, read straight from its
 * place in the tar, and then the manifest is put under its digest (and `tag`). Returns the digest:
 * the artifact's identity, the same in the file, in the registry and on an agent.
 */
export async function pushArtifact(
  client: RegistryClient,
  path: string,
  repository: string,
  options: PushOptions = {},
): Promise<{ digest: string; blobs: number; uploaded: number }> {
  const { digest, mediaType } = await readArtifactIndex(
    path,
    options.signal ? { signal: options.signal } : {},
  );
  const handle = await open(path, "r");
  let manifest: Buffer;
  let blobs: { digest: string; size: number; offset: number }[];
  try {
    const entries = await listTarEntries(handle, (await handle.stat()).size, options.signal);
    const manifestEntry = entries.get(blobName(digest));
    if (!manifestEntry)
      throw new RegistryError("OCIAPP_REGISTRY", `the artifact has no manifest blob ${digest}`);
    manifest = await readEntry(handle, manifestEntry);
    const parsed = JSON.parse(manifest.toString("utf8")) as Record<string, unknown>;
    const descriptors = [
      parseDescriptor(parsed.config, "config"),
      ...parseDescriptorList(parsed.layers, "layers"),
    ];
    blobs = descriptors.map((descriptor) => {
      const entry = entries.get(blobName(descriptor.digest));
      if (!entry || entry.size !== descriptor.size) {
        throw new RegistryError(
          "OCIAPP_REGISTRY",
          `the artifact lacks blob ${descriptor.digest} (or its size differs)`,
        );
      }
      return { digest: descriptor.digest, size: entry.size, offset: entry.offset };
    });
  } finally {
    await handle.close();
  }
  let uploaded = 0;
  for (const blob of blobs) {
    options.signal?.throwIfAborted();
    if (await client.hasBlob(repository, blob.digest, options.signal)) {
      options.onBlob?.(blob.digest, blob.size, false);
      continue;
    }
    const end = blob.offset + blob.size - 1;
    const body = () =>
      blob.size === 0 ? Readable.from([]) : createReadStream(path, { start: blob.offset, end });
    await client.pushBlob(repository, blob.digest, blob.size, body, options.signal);
    uploaded++;
    options.onBlob?.(blob.digest, blob.size, true);
  }
  await client.putManifest(repository, digest, manifest, mediaType, options.signal);
  if (options.tag !== undefined)
    await client.putManifest(repository, options.tag, manifest, mediaType, options.signal);
  return { digest, blobs: blobs.length, uploaded };
}

export interface PullOptions {
  signal?: AbortSignal;
  /** Largest artifact written, bytes (the blobs' declared sizes are checked before any is fetched). */
  maxBytes?: number;
}

/**
 * Pulls the image manifest `digest` from `repository` and writes it as a .ociapp file at `target`
 * (an OCI image layout tar: the blobs, then index.json pointing at the manifest, then oci-layout).
 * The manifest is checked against the digest before anything else is fetched, and every blob
 * against its own digest and size while it streams; on any failure `target` is removed.
 */
export async function pullArtifact(
  client: RegistryClient,
  repository: string,
  digest: string,
  target: string,
  options: PullOptions = {},
): Promise<{ digest: string; bytes: number }> {
  if (!DIGEST.test(digest))
    throw new RegistryError("OCIAPP_REGISTRY", `not a sha256 digest: ${digest.slice(0, 80)}`);
  const { signal } = options;
  const { bytes: manifest, mediaType } = await client.getManifest(repository, digest, signal);
  const actual = `sha256:${createHash("sha256").update(manifest).digest("hex")}`;
  if (actual !== digest) {
    throw new RegistryError(
      "OCIAPP_REGISTRY_DIGEST",
      `${client.base.host}/${repository} sent a manifest whose digest is ${actual}, not ${digest}`,
    );
  }
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(manifest.toString("utf8")) as Record<string, unknown>;
  } catch {
    throw new RegistryError("OCIAPP_REGISTRY", "the manifest is not JSON");
  }
  const type = typeof parsed.mediaType === "string" ? parsed.mediaType : mediaType;
  if (!MANIFEST_MEDIA_TYPES.has(type))
    throw new RegistryError("OCIAPP_REGISTRY", `${digest} is a ${type}, not an image manifest`);
  const descriptors = [
    parseDescriptor(parsed.config, "config"),
    ...parseDescriptorList(parsed.layers, "layers"),
  ];
  const total = descriptors.reduce((sum, d) => sum + d.size, 0);
  if (options.maxBytes !== undefined && total > options.maxBytes) {
    throw new RegistryError(
      "OCIAPP_REGISTRY",
      `the artifact's blobs are ${total} bytes, over the ${options.maxBytes}-byte limit`,
    );
  }
  const out = createWriteStream(target, { flags: "wx", mode: 0o600 });
  let written = 0;
  const write = (chunk: Buffer) =>
    new Promise<void>((resolve, reject) => {
      written += chunk.length;
      out.write(chunk, (error) => (error ? reject(error) : resolve()));
    });
  try {
    const seen = new Set<string>();
    for (const descriptor of descriptors) {
      if (seen.has(descriptor.digest)) continue;
      seen.add(descriptor.digest);
      await write(tarHeader(blobName(descriptor.digest), descriptor.size));
      const body = await client.getBlob(repository, descriptor.digest, signal);
      await pipeline(body, verifying(descriptor.digest, descriptor.size), out, {
        end: false,
        ...(signal ? { signal } : {}),
      });
      written += descriptor.size;
      await write(Buffer.alloc((BLOCK - (descriptor.size % BLOCK)) % BLOCK));
    }
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [{ mediaType: type, digest, size: manifest.length }],
      }),
    );
    for (const [name, body] of [
      [blobName(digest), manifest],
      ["index.json", index],
      ["oci-layout", Buffer.from('{"imageLayoutVersion":"1.0.0"}')],
    ] as const) {
      await write(tarHeader(name, body.length));
      await write(body);
      await write(Buffer.alloc((BLOCK - (body.length % BLOCK)) % BLOCK));
    }
    await write(Buffer.alloc(2 * BLOCK));
    await new Promise<void>((resolve, reject) =>
      out.end((error?: Error | null) => (error ? reject(error) : resolve())),
    );
    return { digest, bytes: written };
  } catch (error) {
    out.destroy();
    await rm(target, { force: true });
    throw error;
  }
}

/** Passes a blob through while hashing it; fails on a wrong size or digest. */
function verifying(digest: string, size: number): Transform {
  const hash = createHash("sha256");
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      seen += chunk.length;
      if (seen > size) {
        callback(
          new RegistryError("OCIAPP_REGISTRY_DIGEST", `blob ${digest} is longer than its ${size} bytes`),
        );
        return;
      }
      hash.update(chunk);
      callback(null, chunk);
    },
    flush(callback) {
      const actual = `sha256:${hash.digest("hex")}`;
      if (seen !== size || actual !== digest) {
        callback(
          new RegistryError(
            "OCIAPP_REGISTRY_DIGEST",
            `blob ${digest} arrived as ${actual} (${seen} of ${size} bytes)`,
          ),
        );
      } else callback();
    },
  });
}

/** A POSIX ustar header for a regular file (names here are short; sizes up to 8 GiB in octal). */
function tarHeader(name: string, size: number): Buffer {
  if (size > 0o77777777777) throw new RegistryError("OCIAPP_REGISTRY", `blob of ${size} bytes is too large`);
  const header = Buffer.alloc(BLOCK);
  header.write(name, 0, 100, "utf8");
  header.write("0000444\0", 100, "latin1");
  header.write("0000000\0", 108, "latin1");
  header.write("0000000\0", 116, "latin1");
  header.write(`${size.toString(8).padStart(11, "0")}\0`, 124, "latin1");
  header.write("00000000000\0", 136, "latin1");
  header.write("0", 156, "latin1");
  header.write("ustar\u000000", 257, "latin1");
  header.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
  return header;
}
