import { mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ArtifactFormatError,
  inspectArtifact,
  PROTOCOL_ANNOTATION,
  readArtifactIndex,
} from "ociapp/artifact";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  blobPath,
  MANIFEST_ANNOTATIONS,
  makeLayout,
  sha256,
  type TarFile,
  tarBuffer,
  ustarHeader,
  writeLayout,
} from "./artifact-fixtures.js";

let dir = "";
let counter = 0;
const nextPath = () => join(dir, `artifact-${++counter}.ociapp`);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ociapp-artifact-test-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function layoutFile(files: TarFile[]): Promise<string> {
  const path = nextPath();
  await writeLayout(path, files);
  return path;
}

async function expectInvalid(path: string, message: RegExp): Promise<void> {
  for (const read of [readArtifactIndex, inspectArtifact]) {
    const error = await read(path).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(ArtifactFormatError);
    expect((error as ArtifactFormatError).code).toBe("OCIAPP_ARTIFACT_INVALID");
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).not.toContain("\n");
  }
}

const replace = (files: TarFile[], name: string, body: Buffer): TarFile[] =>
  files.map((file) => (file.name === name ? { ...file, body } : file));

describe("readArtifactIndex / inspectArtifact on well-formed layouts", () => {
  it("returns the manifest descriptor index.json points at", async () => {
    const layout = makeLayout();
    const path = await layoutFile(layout.files);
    expect(await readArtifactIndex(path)).toEqual({
      digest: layout.manifestDigest,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      size: layout.manifestSize,
      refName: "docker.io/library/echo-app:0.1.0",
      annotations: MANIFEST_ANNOTATIONS,
    });
  });

  it("reads the protocol annotation with the identity, reading no layer", async () => {
    const layout = makeLayout({
      manifest: (m) => {
        Object.assign(m.annotations as object, { [PROTOCOL_ANNOTATION]: "2" });
        // A layer the archive does not hold: only inspectArtifact looks for layers.
        (m.layers as object[]).push({ mediaType: "x", digest: `sha256:${"1".repeat(64)}`, size: 1 });
      },
    });
    const path = await layoutFile(layout.files);
    const index = await readArtifactIndex(path);
    expect(index).toMatchObject({ digest: layout.manifestDigest, protocol: 2 });
    expect(index.annotations[PROTOCOL_ANNOTATION]).toBe("2");
    await expect(inspectArtifact(path)).rejects.toThrow(/not in the archive/);
    const without = await readArtifactIndex(await layoutFile(makeLayout().files));
    expect(without.protocol).toBeUndefined();
    expect("protocol" in without).toBe(false);
  });

  it("inspects annotations and layers and reports the file size", async () => {
    const layout = makeLayout();
    const path = await layoutFile(layout.files);
    const info = await inspectArtifact(path);
    expect(info.digest).toBe(layout.manifestDigest);
    expect(info.bytes).toBe((await readFile(path)).length);
    expect(info.title).toBe("echo-app");
    expect(info.version).toBe("0.1.0");
    expect(info.entrypoint).toBe("dist/main.js#app");
    expect(info.annotations).toEqual(MANIFEST_ANNOTATIONS);
    expect(info.layers).toEqual(layout.layers);
  });

  it("follows a multi-platform index to this host's (or the linux/amd64) manifest, skipping attestations", async () => {
    const layout = makeLayout();
    const manifestFile = layout.files.find((f) => f.name === blobPath(layout.manifestDigest))!;
    const other = Buffer.from(JSON.stringify({ schemaVersion: 2, note: "arm image" }));
    const attestation = Buffer.from(JSON.stringify({ schemaVersion: 2, note: "attestation" }));
    const manifestDescriptor = (body: Buffer, platform: object, annotations: object = {}) => ({
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: sha256(body),
      size: body.length,
      platform,
      annotations,
    });
    const nested = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [
          manifestDescriptor(
            attestation,
            { os: "unknown", architecture: "unknown" },
            {
              "vnd.docker.reference.type": "attestation-manifest",
            },
          ),
          manifestDescriptor(other, { os: "linux", architecture: "riscv64" }),
          manifestDescriptor(manifestFile.body, { os: "linux", architecture: "amd64" }),
        ],
      }),
    );
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        manifests: [
          {
            mediaType: "application/vnd.oci.image.index.v1+json",
            digest: sha256(nested),
            size: nested.length,
            annotations: { "io.containerd.image.name": "docker.io/library/multi:1" },
          },
        ],
      }),
    );
    const files = [
      ...layout.files.filter((f) => f.name !== "index.json" && f.name !== "oci-layout"),
      { name: blobPath(sha256(other)), body: other },
      { name: blobPath(sha256(attestation)), body: attestation },
      { name: blobPath(sha256(nested)), body: nested },
      { name: "index.json", body: index },
      { name: "oci-layout", body: Buffer.from('{"imageLayoutVersion":"1.0.0"}') },
    ];
    const path = await layoutFile(files);
    const result = await readArtifactIndex(path);
    expect(result.digest).toBe(layout.manifestDigest);
    expect(result.refName).toBe("docker.io/library/multi:1");
    expect((await inspectArtifact(path)).layers).toEqual(layout.layers);
  });

  it("reads PAX long names and ./-prefixed names", async () => {
    const layout = makeLayout();
    const files: TarFile[] = [
      { name: `docs/${"x".repeat(180)}.txt`, body: Buffer.from("long name") },
      ...layout.files.map((f) => (f.name === "index.json" ? { ...f, name: "./index.json" } : f)),
    ];
    const path = await layoutFile(files);
    expect((await readArtifactIndex(path)).digest).toBe(layout.manifestDigest);
  });

  it("never reads layer bodies: an 8 GiB sparse layer costs nothing", async () => {
    const layout = makeLayout();
    const huge = 8 * 1024 ** 3;
    const hugeDigest = `sha256:${"ab".repeat(32)}`;
    const head = await tarBuffer(
      layout.files.filter((f) => f.name !== "index.json" && f.name !== "oci-layout"),
    );
    const tail = await tarBuffer(
      layout.files.filter((f) => f.name === "index.json" || f.name === "oci-layout"),
    );
    // Each tarBuffer ends with two zero blocks; drop them from the head so the archive continues.
    const headBody = head.subarray(0, head.length - 1024);
    const path = nextPath();
    const handle = await open(path, "w");
    try {
      await handle.write(headBody, 0, headBody.length, 0);
      await handle.write(ustarHeader(blobPath(hugeDigest), huge), 0, 512, headBody.length);
      const after = headBody.length + 512 + huge;
      await handle.write(tail, 0, tail.length, after);
    } finally {
      await handle.close();
    }
    const before = process.memoryUsage().rss;
    const info = await inspectArtifact(path);
    expect(info.digest).toBe(layout.manifestDigest);
    expect(info.bytes).toBeGreaterThan(huge);
    expect(process.memoryUsage().rss - before).toBeLessThan(256 * 1024 * 1024);
  });
});

describe("malformed artifacts are rejected with ArtifactFormatError", () => {
  it("random bytes (not a tar archive)", async () => {
    const path = nextPath();
    await writeFile(path, Buffer.alloc(4096, 0x41));
    await expectInvalid(path, /checksum/);
  });

  it("an empty file", async () => {
    const path = nextPath();
    await writeFile(path, "");
    await expectInvalid(path, /oci-layout/);
  });

  it("a truncated archive", async () => {
    const whole = await tarBuffer(makeLayout().files);
    for (const cut of [100, 512 * 4 + 100, whole.length - 2000]) {
      const path = nextPath();
      await writeFile(path, whole.subarray(0, cut));
      await expectInvalid(path, /truncated|past the end|no oci-layout|missing/);
    }
  });

  it("no index.json", async () => {
    await expectInvalid(
      await layoutFile(makeLayout().files.filter((f) => f.name !== "index.json")),
      /missing index\.json/,
    );
  });

  it("index.json that is not JSON, not UTF-8, or not an index", async () => {
    const files = makeLayout().files;
    await expectInvalid(
      await layoutFile(replace(files, "index.json", Buffer.from("{nope"))),
      /not valid JSON/,
    );
    await expectInvalid(
      await layoutFile(replace(files, "index.json", Buffer.from([0x7b, 0xff, 0xfe, 0x7d]))),
      /not valid UTF-8/,
    );
    await expectInvalid(
      await layoutFile(replace(files, "index.json", Buffer.from("[]"))),
      /not a JSON object/,
    );
    await expectInvalid(
      await layoutFile(replace(files, "index.json", Buffer.from('{"schemaVersion":2,"manifests":[]}'))),
      /lists no image/,
    );
  });

  it("an index.json past the 4 MiB bound, even though it would parse", async () => {
    const padded = Buffer.concat([Buffer.alloc(5 * 1024 * 1024, 0x20), Buffer.from("{}")]);
    await expectInvalid(
      await layoutFile(replace(makeLayout().files, "index.json", padded)),
      /over the \d+-byte limit/,
    );
  });

  it("descriptors with bad digests, sizes or media types", async () => {
    const cases: [(index: Record<string, unknown>) => void, RegExp][] = [
      [
        (i) => Object.assign(firstManifest(i), { digest: "sha256:../../../etc/passwd" }),
        /invalid or unsupported digest/,
      ],
      [(i) => Object.assign(firstManifest(i), { digest: `sha512:${"a".repeat(128)}` }), /unsupported digest/],
      [(i) => Object.assign(firstManifest(i), { size: -1 }), /invalid size/],
      [(i) => Object.assign(firstManifest(i), { size: 1e300 }), /invalid size/],
      [(i) => Object.assign(firstManifest(i), { size: 3 }), /descriptor says 3/],
      [
        (i) => Object.assign(firstManifest(i), { mediaType: "application/vnd.oci.image.layer.v1.tar" }),
        /not an image manifest/,
      ],
      [(i) => Object.assign(firstManifest(i), { digest: `sha256:${"0".repeat(64)}` }), /not in the archive/],
      [(i) => Object.assign(i, { schemaVersion: 1 }), /schemaVersion/],
      [(i) => Object.assign(i, { manifests: new Array(5000).fill(firstManifest(i)) }), /more than 4096/],
    ];
    for (const [edit, message] of cases) {
      await expectInvalid(await layoutFile(makeLayout({ index: edit }).files), message);
    }
  });

  it("a manifest blob whose content does not match its digest", async () => {
    const layout = makeLayout();
    const name = blobPath(layout.manifestDigest);
    const original = layout.files.find((f) => f.name === name)!.body;
    const tampered = Buffer.from(original.toString().replace("echo-app", "evil-app"));
    const path = await layoutFile(replace(layout.files, name, tampered));
    await expectInvalid(path, /does not match its digest/);
  });

  it("a protocol annotation that is not a protocol version", async () => {
    for (const value of ["two", "0", "02", "2.0", " 2", "1".repeat(12)]) {
      const layout = makeLayout({
        manifest: (m) => Object.assign(m.annotations as object, { [PROTOCOL_ANNOTATION]: value }),
      });
      await expectInvalid(
        await layoutFile(layout.files),
        /annotation dev\.ociapp\.protocol is .*, not a protocol version/,
      );
    }
  });

  it("a manifest that lists a layer missing from the archive", async () => {
    const layout = makeLayout({
      manifest: (m) =>
        (m.layers as object[]).push({ mediaType: "x", digest: `sha256:${"1".repeat(64)}`, size: 1 }),
    });
    await expect(inspectArtifact(await layoutFile(layout.files))).rejects.toThrow(
      /layer sha256:1+ is not in the archive/,
    );
  });

  it("non-string annotations", async () => {
    const layout = makeLayout({ manifest: (m) => Object.assign(m, { annotations: { a: 1 } }) });
    await expect(inspectArtifact(await layoutFile(layout.files))).rejects.toThrow(ArtifactFormatError);
  });

  it("duplicate entries", async () => {
    const files = makeLayout().files;
    const index = files.find((f) => f.name === "index.json")!;
    await expectInvalid(await layoutFile([...files, index]), /duplicate tar entry "index\.json"/);
  });

  it("indexes nested too deeply", async () => {
    const layout = makeLayout();
    let target = {
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: layout.manifestDigest,
      size: layout.manifestSize,
    };
    const extra: TarFile[] = [];
    for (let i = 0; i < 6; i++) {
      const body = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [target] }));
      extra.push({ name: blobPath(sha256(body)), body });
      target = {
        mediaType: "application/vnd.oci.image.index.v1+json",
        digest: sha256(body),
        size: body.length,
      };
    }
    const files = [
      ...layout.files.filter((f) => f.name !== "index.json" && f.name !== "oci-layout"),
      ...extra,
      { name: "index.json", body: Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [target] })) },
      { name: "oci-layout", body: Buffer.from("{}") },
    ];
    await expectInvalid(await layoutFile(files), /nest too deeply/);
  });

  it("an entry size past the end of the file, and a negative base-256 size", async () => {
    const over = ustarHeader("blobs/sha256/x", 10 * 1024 * 1024);
    const path = nextPath();
    await writeFile(path, Buffer.concat([over, Buffer.alloc(2048)]));
    await expectInvalid(path, /past the end of the file/);

    const negative = ustarHeader("x", 1);
    negative[124] = 0xff; // base-256 with the sign bit set
    negative.fill(0x20, 148, 156);
    let sum = 0;
    for (const byte of negative) sum += byte;
    negative.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
    const negativePath = nextPath();
    await writeFile(negativePath, Buffer.concat([negative, Buffer.alloc(1024)]));
    await expectInvalid(negativePath, /negative tar entry size/);
  });

  it("a PAX header larger than its bound", async () => {
    const path = nextPath();
    await writeFile(
      path,
      Buffer.concat([ustarHeader("PaxHeader", 1024 * 1024, "x"), Buffer.alloc(1024 * 1024 + 1024)]),
    );
    await expectInvalid(path, /extended header .* over the limit/);
  });

  it("more tar entries than the bound", async () => {
    const header = ustarHeader("blobs/sha256/empty", 0, "5");
    const path = nextPath();
    await writeFile(path, Buffer.concat([...new Array(65_537).fill(header), Buffer.alloc(1024)]));
    await expectInvalid(path, /more than 65536 tar entries/);
  });
});

it("honours an aborted signal", async () => {
  const path = await layoutFile(makeLayout().files);
  const controller = new AbortController();
  controller.abort(new Error("stop"));
  await expect(readArtifactIndex(path, { signal: controller.signal })).rejects.toThrow("stop");
  await expect(inspectArtifact(path, { signal: controller.signal })).rejects.toThrow("stop");
});

function firstManifest(index: Record<string, unknown>): Record<string, unknown> {
  return (index.manifests as Record<string, unknown>[])[0]!;
}
