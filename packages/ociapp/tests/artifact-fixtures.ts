import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { pack } from "tar-stream";

// Builds synthetic OCI image layouts the way buildx writes them (blobs first, index.json and
// oci-layout last), with hooks to break them in every way an untrusted artifact could.

export interface TarFile {
  name: string;
  body: Buffer;
  type?: "file" | "directory";
  /** extra PAX headers for this entry */
  pax?: Record<string, string>;
}

export function sha256(body: Buffer): string {
  return `sha256:${createHash("sha256").update(body).digest("hex")}`;
}

export function blobPath(digest: string): string {
  return `blobs/sha256/${digest.slice("sha256:".length)}`;
}

export async function tarBuffer(files: TarFile[]): Promise<Buffer> {
  const archive = pack();
  const chunks: Buffer[] = [];
  archive.on("data", (chunk: unknown) => {
    chunks.push(chunk as Buffer);
  });
  const done = new Promise<void>((resolve, reject) => {
    archive.on("end", resolve);
    archive.on("error", reject);
  });
  for (const file of files) {
    if (file.type === "directory") {
      archive.entry({ name: file.name, type: "directory", mode: 0o755 });
    } else {
      archive.entry(
        { name: file.name, size: file.body.length, mode: 0o444, ...(file.pax ? { pax: file.pax } : {}) },
        file.body,
      );
    }
  }
  archive.finalize();
  await done;
  return Buffer.concat(chunks);
}

export interface Layout {
  files: TarFile[];
  manifestDigest: string;
  manifestSize: number;
  layers: { digest: string; size: number; mediaType: string }[];
}

export const MANIFEST_ANNOTATIONS = {
  "org.opencontainers.image.title": "echo-app",
  "org.opencontainers.image.version": "0.1.0",
  "dev.ociapp.entrypoint": "dist/main.js#app",
};

const json = (value: unknown) => Buffer.from(JSON.stringify(value));

/** A valid single-manifest layout; `edit` may change the documents before they are serialised. */
export function makeLayout(
  edit: {
    manifest?: (manifest: Record<string, unknown>) => void;
    index?: (index: Record<string, unknown>) => void;
  } = {},
): Layout {
  const config = json({ architecture: "amd64", os: "linux", config: { User: "10001:10001" }, rootfs: {} });
  const layerBodies = [Buffer.alloc(3000, 1), Buffer.alloc(10, 2)];
  const layers = layerBodies.map((body) => ({
    mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
    digest: sha256(body),
    size: body.length,
  }));
  const manifestObject: Record<string, unknown> = {
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: {
      mediaType: "application/vnd.oci.image.config.v1+json",
      digest: sha256(config),
      size: config.length,
    },
    layers,
    annotations: { ...MANIFEST_ANNOTATIONS },
  };
  edit.manifest?.(manifestObject);
  const manifest = json(manifestObject);
  const indexObject: Record<string, unknown> = {
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [
      {
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        digest: sha256(manifest),
        size: manifest.length,
        annotations: {
          "io.containerd.image.name": "docker.io/library/echo-app:0.1.0",
          "org.opencontainers.image.ref.name": "0.1.0",
        },
        platform: { architecture: "amd64", os: "linux" },
      },
    ],
  };
  edit.index?.(indexObject);
  return {
    files: [
      { name: "blobs/", body: Buffer.alloc(0), type: "directory" },
      { name: "blobs/sha256/", body: Buffer.alloc(0), type: "directory" },
      ...layerBodies.map((body) => ({ name: blobPath(sha256(body)), body })),
      { name: blobPath(sha256(config)), body: config },
      { name: blobPath(sha256(manifest)), body: manifest },
      { name: "index.json", body: json(indexObject) },
      { name: "oci-layout", body: json({ imageLayoutVersion: "1.0.0" }) },
    ],
    manifestDigest: sha256(manifest),
    manifestSize: manifest.length,
    layers,
  };
}

export async function writeLayout(path: string, files: TarFile[]): Promise<void> {
  await writeFile(path, await tarBuffer(files));
}

/** A raw ustar header; sizes past the 11-digit octal field use GNU base-256, as large-file tars do. */
export function ustarHeader(name: string, size: number, type = "0"): Buffer {
  const header = Buffer.alloc(512);
  header.write(name, 0, 100, "utf8");
  header.write("0000444\0", 100, "latin1");
  header.write("0000000\0", 108, "latin1");
  header.write("0000000\0", 116, "latin1");
  if (size > 0o77777777777) {
    header[124] = 0x80;
    let value = BigInt(size);
    for (let i = 135; i > 124; i--) {
      header[i] = Number(value & 0xffn);
      value >>= 8n;
    }
  } else {
    header.write(`${size.toString(8).padStart(11, "0")}\0`, 124, "latin1");
  }
  header.write("00000000000\0", 136, "latin1");
  header.write(type, 156, "latin1");
  header.write("ustar\0" + "00", 257, "latin1");
  header.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
  return header;
}
