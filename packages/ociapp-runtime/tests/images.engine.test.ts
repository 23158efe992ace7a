import { execFile } from "node:child_process";
import { copyFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { artifactReference } from "../src/images/names.js";
import { ArtifactError, DockerEngine, Runtime, type RuntimeOptions } from "../src/index.js";
import { type FixtureProject, fixtureProject } from "./support/fixture-build.js";
import { gzipZeros, randomLayer, rewriteTar, sha256, tinyImage, zstdZeros } from "./support/oci-tar.js";
import { type Reply, rejection } from "./support/outcomes.js";

// Issue 12 A and G against the real Docker engine (containerd image store): artifacts never name
// images, loads are checked complete and leave nothing when they fail, the unpacked-size budget,
// and retention. Every image and tag made here is removed at the end.

const execFileAsync = promisify(execFile);
const docker = async (...args: string[]) => (await execFileAsync("docker", args)).stdout.trim();
const VICTIM = "ociapp-images-test/victim:1";

describe("images on the Docker engine", () => {
  const engine = new DockerEngine();
  let fixture: FixtureProject;
  let first: { path: string; digest: string };
  let work: string;
  let socketDir: string;
  const digests = new Set<string>();
  const runtimes: Runtime[] = [];

  /** The runtime-owned names the engine has (any runtime's). */
  const runtimeNames = async () =>
    (await docker("images", "--format", "{{.Repository}}:{{.Tag}}", "ociapp.invalid/*"))
      .split("\n")
      .filter(Boolean);
  const holds = async (digest: string) =>
    (await engine.listImages()).some((i) => i.artifacts.includes(digest));
  const dropImage = async (digest: string) => {
    await docker("image", "rm", "-f", digest).catch(() => "");
  };
  const loadingNames = async () =>
    (await runtimeNames()).filter((name) => name.startsWith("ociapp.invalid/loading:"));

  function runtime(options: RuntimeOptions = {}): Runtime {
    const created = new Runtime({ socketDir, ...options });
    runtimes.push(created);
    return created;
  }

  /** Loading names that existed before this file ran (another runtime on the shared engine). */
  let loadingBefore = new Set<string>();

  beforeAll(async () => {
    loadingBefore = new Set(await loadingNames());
    work = await mkdtemp(join(tmpdir(), "ort-images-"));
    socketDir = await mkdtemp(join(tmpdir(), "ort-img-"));
    fixture = await fixtureProject();
    const built = await fixture.build();
    first = { path: join(work, "first.ociapp"), digest: built.digest };
    await copyFile(built.path, first.path);
    digests.add(first.digest);
  });

  afterEach(async () => {
    await Promise.all(runtimes.splice(0).map((rt) => rt.close()));
  });

  afterAll(async () => {
    await Promise.all(runtimes.map((rt) => rt.close()));
    for (const digest of digests) await dropImage(digest);
    await docker("image", "rm", VICTIM).catch(() => "");
    // Every loading name this file's loads made is gone. Another runtime's load in progress on the
    // shared engine may hold one for a moment: those finish and remove theirs too.
    const deadline = Date.now() + 60_000;
    let left = (await loadingNames()).filter((name) => !loadingBefore.has(name));
    while (left.length > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      left = (await loadingNames()).filter((name) => !loadingBefore.has(name));
    }
    expect(left).toEqual([]);
    await fixture?.remove();
    if (work) await rm(work, { recursive: true, force: true });
    if (socketDir) await rm(socketDir, { recursive: true, force: true });
  });

  it("loads an artifact that names an engine tag without touching that tag", async () => {
    await docker("tag", "node:20-bookworm-slim", VICTIM);
    const victimId = await docker("image", "inspect", "--format", "{{.Id}}", VICTIM);
    // The same artifact (index.json is not content-addressed: same digest), naming the victim tag.
    const hostile = join(work, "hostile.ociapp");
    await rewriteTar(first.path, hostile, (name, body) => {
      if (name !== "index.json") return undefined;
      const index = JSON.parse(body.toString());
      for (const manifest of index.manifests) {
        manifest.annotations = {
          ...manifest.annotations,
          "io.containerd.image.name": `docker.io/${VICTIM}`,
          "org.opencontainers.image.ref.name": "1",
        };
      }
      return Buffer.from(JSON.stringify(index));
    });
    await dropImage(first.digest);
    const rt = runtime();
    const reply = await rt.execute<Reply>(hostile, { op: "echo", value: "ran" });
    expect(reply.value).toBe("ran");
    expect(rt.stats().artifacts[0]?.imageLoads).toBe(1);
    expect(await docker("image", "inspect", "--format", "{{.Id}}", VICTIM)).toBe(victimId);
    const names = await docker("image", "inspect", "--format", "{{json .RepoTags}}", first.digest);
    expect(JSON.parse(names).filter((name: string) => !name.startsWith("ociapp.invalid/"))).toEqual([]);
    expect(JSON.parse(names)).toContain(artifactReference(first.digest));
    // Every loading name this file's loads made is gone. Another runtime's load in progress on the
    // shared engine may hold one for a moment: those finish and remove theirs too.
    const deadline = Date.now() + 60_000;
    let left = (await loadingNames()).filter((name) => !loadingBefore.has(name));
    while (left.length > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      left = (await loadingNames()).filter((name) => !loadingBefore.has(name));
    }
    expect(left).toEqual([]);
  });

  it("keeps two builds of one name and version side by side: alternating calls never miss their image", async () => {
    await fixture.change();
    const built = await fixture.build();
    const second = { path: join(work, "second.ociapp"), digest: built.digest };
    await copyFile(built.path, second.path);
    digests.add(second.digest);
    expect(second.digest).not.toBe(first.digest);
    const rt = runtime({ idleTimeout: 200, reaperInterval: 50 });
    for (let round = 0; round < 3; round++) {
      for (const artifact of [first, second]) {
        const reply = await rt.execute<Reply>(artifact.path, { op: "echo", value: round });
        expect(reply.value).toBe(round);
      }
    }
    expect(await holds(first.digest)).toBe(true);
    expect(await holds(second.digest)).toBe(true);
    // A second runtime finds both images: nothing is loaded again.
    const other = runtime();
    await other.execute(first.path, { op: "echo", value: 1 });
    await other.execute(second.path, { op: "echo", value: 2 });
    expect(other.stats().artifacts.map((stats) => stats.imageLoads)).toEqual([0, 0]);
  });

  it("refuses a copy with a corrupted layer blob with ArtifactError and leaves no image; the intact copy then runs", async () => {
    await dropImage(first.digest);
    const corrupt = join(work, "corrupt.ociapp");
    let corrupted = "";
    await rewriteTar(first.path, corrupt, (name, body) => {
      // The smallest gzip blob: a layer (the config and manifest are JSON).
      if (corrupted || !name.startsWith("blobs/") || body[0] !== 0x1f || body.length > 4 * 1024 * 1024) {
        return undefined;
      }
      corrupted = name;
      // The gzip header's OS byte: the layer still decompresses to the same bytes, but no longer
      // matches its digest (what a flipped bit in transit or on disk does to an artifact).
      const copy = Buffer.from(body);
      copy[9] = (copy[9] as number) ^ 0x01;
      return copy;
    });
    expect(corrupted).not.toBe("");
    const rt = runtime();
    const error = await rejection(rt.execute(corrupt, { op: "echo", value: 1 }));
    expect(error).toBeInstanceOf(ArtifactError);
    expect((error as Error).message).toContain("does not match its digest");
    expect(await engine.hasImage(first.digest)).toBe(false);
    expect(await holds(first.digest)).toBe(false);
    // Every loading name this file's loads made is gone. Another runtime's load in progress on the
    // shared engine may hold one for a moment: those finish and remove theirs too.
    const deadline = Date.now() + 60_000;
    let left = (await loadingNames()).filter((name) => !loadingBefore.has(name));
    while (left.length > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      left = (await loadingNames()).filter((name) => !loadingBefore.has(name));
    }
    expect(left).toEqual([]);
    const reply = await rt.execute<Reply>(first.path, { op: "echo", value: "intact" });
    expect(reply.value).toBe("intact");
  });

  it("removes the image record an engine-side failure left (the containerd store keeps one)", async () => {
    const broken = await tinyImage({ layers: [await randomLayer()], diffIds: [sha256("not the layer")] });
    const path = join(work, "broken.ociapp");
    await writeFile(path, broken.tarball);
    digests.add(broken.manifestDigest);
    const error = await rejection(
      engine.loadImage(path, broken.manifestDigest, { maxUnpackedBytes: 1 << 30 }),
    );
    expect(error).toBeInstanceOf(ArtifactError);
    expect((error as Error).message).toContain("could not load");
    expect(await docker("images", "-q", "--no-trunc", broken.manifestDigest).catch(() => "")).toBe("");
    expect(await engine.hasImage(broken.manifestDigest)).toBe(false);
    // Every loading name this file's loads made is gone. Another runtime's load in progress on the
    // shared engine may hold one for a moment: those finish and remove theirs too.
    const deadline = Date.now() + 60_000;
    let left = (await loadingNames()).filter((name) => !loadingBefore.has(name));
    while (left.length > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      left = (await loadingNames()).filter((name) => !loadingBefore.has(name));
    }
    expect(left).toEqual([]);
    // An intact image of the same shape loads under its reference.
    const intact = await tinyImage();
    const intactPath = join(work, "intact.ociapp");
    await writeFile(intactPath, intact.tarball);
    digests.add(intact.manifestDigest);
    await engine.loadImage(intactPath, intact.manifestDigest, { maxUnpackedBytes: 1 << 30 });
    expect(await engine.hasImage(intact.manifestDigest)).toBe(true);
  });

  it("refuses gzip and zstd bombs by the unpacked-size budget, leaving nothing", async () => {
    const gzipBomb = await tinyImage({ layers: [await gzipZeros(1024 ** 3)] });
    const zstdBomb = await tinyImage({ layers: [zstdZeros(1024 ** 3)] });
    const rt = runtime({ maxUnpackedBytes: 256 * 1024 * 1024 });
    for (const [name, bomb] of [
      ["gzip", gzipBomb],
      ["zstd", zstdBomb],
    ] as const) {
      expect(bomb.tarball.length, name).toBeLessThan(2 * 1024 * 1024);
      const path = join(work, `${name}-bomb.ociapp`);
      await writeFile(path, bomb.tarball);
      digests.add(bomb.manifestDigest);
      const error = await rejection(rt.execute(path, {}));
      expect(error, name).toBeInstanceOf(ArtifactError);
      expect((error as Error).message, name).toContain("maxUnpackedBytes");
      expect(await holds(bomb.manifestDigest), name).toBe(false);
    }
    // Every loading name this file's loads made is gone. Another runtime's load in progress on the
    // shared engine may hold one for a moment: those finish and remove theirs too.
    const deadline = Date.now() + 60_000;
    let left = (await loadingNames()).filter((name) => !loadingBefore.has(name));
    while (left.length > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      left = (await loadingNames()).filter((name) => !loadingBefore.has(name));
    }
    expect(left).toEqual([]);
  });

  it("retention removes an idle image and keeps one a container uses and one another runtime used recently", async () => {
    // X: a container of it runs (runtime `user`); Y: loaded just now (its record is fresh); Z: idle.
    const user = runtime();
    await user.warm(first.path);
    const recent = await tinyImage();
    const idle = await tinyImage();
    for (const image of [recent, idle]) {
      const path = join(work, `${image.manifestDigest.slice(7, 19)}.ociapp`);
      await writeFile(path, image.tarball);
      digests.add(image.manifestDigest);
      await engine.loadImage(path, image.manifestDigest, { maxUnpackedBytes: 1 << 30 });
    }
    // Take the last-used records of X and Z away: X is then kept only because a container uses it.
    for (const name of await runtimeNames()) {
      const digestHex = /^ociapp\.invalid\/used:sha256-([a-f0-9]{64})-/.exec(name)?.[1];
      if (digestHex && [first.digest, idle.manifestDigest].includes(`sha256:${digestHex}`)) {
        await docker("image", "rm", name);
      }
    }
    const keeper = runtime({ images: { idleTimeout: 60_000 } });
    // A pass removes at most MAX_REMOVALS_PER_PASS images, and the shared engine may hold other idle
    // runtime images (earlier tests, other runs): passes go on while they remove something.
    let stats = await keeper.pruneImages();
    for (let removed = 0; stats.removed > removed && (await engine.hasImage(idle.manifestDigest)); ) {
      removed = stats.removed;
      stats = await keeper.pruneImages();
    }
    expect(stats.lastError).toBeUndefined();
    expect(stats.removed).toBeGreaterThanOrEqual(1);
    expect(await engine.hasImage(idle.manifestDigest)).toBe(false);
    expect(await engine.hasImage(first.digest)).toBe(true);
    expect(await engine.hasImage(recent.manifestDigest)).toBe(true);
    const reply = await user.execute<Reply>(first.path, { op: "echo", value: "still here" });
    expect(reply.value).toBe("still here");
  });
});
