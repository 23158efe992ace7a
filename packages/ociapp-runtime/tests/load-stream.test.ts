import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { ArtifactError } from "../src/errors.js";
import { FZSTD_MAX_WINDOW_BYTES, ZSTD_DECODER } from "../src/images/blob-meter.js";
import { createLoadStream, type LoadStreamOptions } from "../src/images/load-stream.js";
import {
  blobPath,
  gzipZeros,
  randomLayer,
  sha256,
  tinyImage,
  untar,
  zstdFrame,
  zstdRaw,
  zstdZeros,
} from "./support/oci-tar.js";

// The rewrite an artifact goes through on its way to the engine, on tarballs made here.

const LOADING = "ociapp.invalid/loading:1-abcdef";

async function load(
  tarball: Buffer,
  manifestDigest: string,
  options: Partial<LoadStreamOptions> = {},
): Promise<{ files: Map<string, Buffer>; unpackedBytes: number; configDigest: string }> {
  const { stream, result } = createLoadStream(Readable.from([tarball]), {
    path: "test.ociapp",
    manifestDigest,
    imageName: LOADING,
    dockerArchive: false,
    maxUnpackedBytes: 1024 ** 3,
    ...options,
  });
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const chunk of stream) chunks.push(chunk as Buffer);
  })();
  const [loaded] = await Promise.all([result, collected.catch(() => undefined)]);
  return { files: await untar(Buffer.concat(chunks)), ...loaded };
}

async function refusal(promise: Promise<unknown>): Promise<ArtifactError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(ArtifactError);
  return error as ArtifactError;
}

describe("createLoadStream", () => {
  it("passes the blobs, and names the image only in its own index.json (no ref.name, no artifact name)", async () => {
    const image = await tinyImage({
      extra: [
        // What an artifact could use to name images: a docker-archive manifest.json and repositories.
        {
          name: "manifest.json",
          body: JSON.stringify([{ Config: "x", RepoTags: ["node:20-bookworm-slim"] }]),
        },
        { name: "repositories", body: JSON.stringify({ node: { "20-bookworm-slim": "x" } }) },
        { name: "blobs/sha256/evil-link", type: "symlink", linkname: "/etc/shadow" },
        { name: "notes.txt", body: "dropped" },
      ],
    });
    const { files, configDigest } = await load(image.tarball, image.manifestDigest);
    expect(configDigest).toBe(image.configDigest);
    expect([...files.keys()].sort()).toEqual(
      [
        blobPath(image.manifestDigest),
        blobPath(image.configDigest),
        ...image.layerDigests.map(blobPath),
        "index.json",
        "oci-layout",
      ].sort(),
    );
    const index = JSON.parse((files.get("index.json") as Buffer).toString());
    expect(index.manifests).toEqual([
      {
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        digest: image.manifestDigest,
        size: (files.get(blobPath(image.manifestDigest)) as Buffer).length,
        annotations: { "io.containerd.image.name": LOADING },
      },
    ]);
    expect(JSON.stringify(index)).not.toContain("ociapp-test/tiny");
  });

  it("appends a docker-archive manifest.json naming the loading reference for the classic store", async () => {
    const image = await tinyImage();
    const { files } = await load(image.tarball, image.manifestDigest, { dockerArchive: true });
    expect(JSON.parse((files.get("manifest.json") as Buffer).toString())).toEqual([
      {
        Config: blobPath(image.configDigest),
        RepoTags: [LOADING],
        Layers: image.layerDigests.map(blobPath),
      },
    ]);
  });

  it("refuses a blob whose bytes do not match its digest", async () => {
    const layer = await randomLayer();
    const image = await tinyImage({
      layers: [layer],
      corrupt: (digest, body) => {
        if (digest !== sha256(layer)) return body;
        const copy = Buffer.from(body);
        copy[600] = (copy[600] as number) ^ 1;
        return copy;
      },
    });
    const error = await refusal(load(image.tarball, image.manifestDigest));
    expect(error.message).toContain("does not match its digest");
  });

  it("refuses an artifact without a layer or its manifest", async () => {
    const layer = await randomLayer();
    const missingLayer = await tinyImage({ layers: [layer], omit: [sha256(layer)] });
    expect((await refusal(load(missingLayer.tarball, missingLayer.manifestDigest))).message).toContain(
      "lacks its layer",
    );
    const other = await tinyImage();
    expect((await refusal(load(other.tarball, sha256("another manifest")))).message).toContain(
      "no blob for its image manifest",
    );
  });

  it("measures what the blobs unpack to: gzip, zstd and uncompressed layers", async () => {
    const plain = await randomLayer(100_000);
    const gzipped = await gzipZeros(3 * 1024 * 1024);
    const zstd = zstdRaw(Buffer.alloc(500_000, 7));
    const image = await tinyImage({ layers: [plain, gzipped, zstd] });
    const { unpackedBytes, files } = await load(image.tarball, image.manifestDigest);
    const config = files.get(blobPath(image.configDigest)) as Buffer;
    const manifest = files.get(blobPath(image.manifestDigest)) as Buffer;
    expect(unpackedBytes).toBe(plain.length + 3 * 1024 * 1024 + 500_000 + config.length + manifest.length);
  });

  it("refuses a gzip layer that unpacks past maxUnpackedBytes, before the engine got it all", async () => {
    const bomb = await gzipZeros(256 * 1024 * 1024);
    expect(bomb.length).toBeLessThan(1024 * 1024);
    const image = await tinyImage({ layers: [bomb] });
    const error = await refusal(
      load(image.tarball, image.manifestDigest, { maxUnpackedBytes: 32 * 1024 * 1024 }),
    );
    expect(error.message).toContain("maxUnpackedBytes");
  });

  it(`refuses a zstd layer that unpacks past maxUnpackedBytes (decoder here: ${ZSTD_DECODER})`, async () => {
    const bomb = zstdZeros(1024 ** 3);
    expect(bomb.length).toBeLessThan(64 * 1024);
    const image = await tinyImage({ layers: [bomb] });
    const error = await refusal(
      load(image.tarball, image.manifestDigest, { maxUnpackedBytes: 64 * 1024 * 1024 }),
    );
    expect(error.message).toContain("maxUnpackedBytes");
  });

  it("refuses zstd frames it will not decode: a window over the limit, a dictionary, garbage", async () => {
    const cases: [Buffer, string][] = [
      [zstdFrame([{ raw: Buffer.from("hello") }], 31), "window"],
      [Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x01]), Buffer.alloc(20)]), "dictionary"],
      [Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(64, 0xff)]), "cannot be unpacked"],
    ];
    if (ZSTD_DECODER === "fzstd") {
      // Over fzstd's bound, under zlib's: refused only where fzstd decodes.
      cases.push([
        zstdFrame([{ raw: Buffer.from("hello") }], Math.log2(FZSTD_MAX_WINDOW_BYTES) + 1),
        "window",
      ]);
    }
    for (const [layer, expected] of cases) {
      const image = await tinyImage({ layers: [layer] });
      const error = await refusal(load(image.tarball, image.manifestDigest));
      expect(error.message, expected).toContain("cannot be unpacked");
      expect(error.message, expected).toContain(expected === "cannot be unpacked" ? "" : expected);
    }
  });

  it("refuses what is not a tarball", async () => {
    const error = await refusal(load(Buffer.alloc(2048, 0x41), sha256("x")));
    expect(error.code).toBe("OCIAPP_ARTIFACT");
  });
});
