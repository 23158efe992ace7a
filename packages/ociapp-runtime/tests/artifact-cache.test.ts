import { describe, expect, it } from "vitest";
import { ArtifactCache, type FileIdentity } from "../src/artifacts/artifact-cache.js";
import { ArtifactError } from "../src/errors.js";

const A = `sha256:${"a".repeat(64)}`;
const B = `sha256:${"b".repeat(64)}`;

function setup() {
  let now = 0;
  const files = new Map<string, FileIdentity & { digest: string }>();
  const stats: string[] = [];
  const reads: string[] = [];
  const cache = new ArtifactCache({
    now: () => now,
    stat: async (path) => {
      stats.push(path);
      const file = files.get(path);
      if (!file) throw Object.assign(new Error(`ENOENT: ${path}`), { code: "ENOENT" });
      return file;
    },
    readIndex: async (path) => {
      reads.push(path);
      await new Promise((resolve) => setTimeout(resolve, 5));
      const file = files.get(path);
      if (!file) throw new Error("vanished");
      if (file.digest === "bad") throw new Error("index.json is not valid JSON");
      return { digest: file.digest };
    },
  });
  return {
    cache,
    files,
    stats,
    reads,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

describe("ArtifactCache", () => {
  it("reads a file's index once and re-stats it at most once per second", async () => {
    const { cache, files, stats, reads, advance } = setup();
    files.set("/a.ociapp", { dev: 1, ino: 10, size: 100, mtimeMs: 1, digest: A });
    expect(await cache.resolve("/a.ociapp")).toBe(A);
    for (let i = 0; i < 100; i++) {
      expect(cache.lookup("/a.ociapp")).toBe(A);
      advance(10);
    }
    expect(stats).toHaveLength(1);
    expect(cache.lookup("/a.ociapp")).toBeUndefined();
    expect(await cache.resolve("/a.ociapp")).toBe(A);
    expect(stats).toHaveLength(2);
    expect(reads).toHaveLength(1);
  });

  it("shares one check between concurrent first calls", async () => {
    const { cache, files, stats, reads } = setup();
    files.set("/a.ociapp", { dev: 1, ino: 10, size: 100, mtimeMs: 1, digest: A });
    const digests = await Promise.all(Array.from({ length: 20 }, () => cache.resolve("/a.ociapp")));
    expect(new Set(digests)).toEqual(new Set([A]));
    expect(stats).toHaveLength(1);
    expect(reads).toHaveLength(1);
  });

  it("notices a file rebuilt at the same path by its identity", async () => {
    const { cache, files, reads, advance } = setup();
    files.set("/a.ociapp", { dev: 1, ino: 10, size: 100, mtimeMs: 1, digest: A });
    expect(await cache.resolve("/a.ociapp")).toBe(A);
    files.set("/a.ociapp", { dev: 1, ino: 11, size: 120, mtimeMs: 2, digest: B });
    advance(999);
    expect(await cache.resolve("/a.ociapp")).toBe(A);
    advance(2);
    expect(await cache.resolve("/a.ociapp")).toBe(B);
    expect(reads).toHaveLength(2);
  });

  it("answers a second path to a known file identity (a hard link) without reading it", async () => {
    const { cache, files, reads } = setup();
    const identity = { dev: 1, ino: 10, size: 100, mtimeMs: 1, digest: A };
    files.set("/a.ociapp", identity);
    files.set("/link.ociapp", identity);
    expect(await cache.resolve("/a.ociapp")).toBe(A);
    expect(await cache.resolve("/link.ociapp")).toBe(A);
    expect(reads).toEqual(["/a.ociapp"]);
  });

  it("rejects with ArtifactError for a missing or malformed file, and retries afterwards", async () => {
    const { cache, files } = setup();
    const missing = await cache.resolve("/missing.ociapp").catch((error: unknown) => error);
    expect(missing).toBeInstanceOf(ArtifactError);
    expect((missing as ArtifactError).message).toBe("cannot read artifact /missing.ociapp: no such file");
    expect((missing as ArtifactError).code).toBe("OCIAPP_ARTIFACT");
    files.set("/bad.ociapp", { dev: 1, ino: 12, size: 1, mtimeMs: 1, digest: "bad" });
    const bad = await cache.resolve("/bad.ociapp").catch((error: unknown) => error);
    expect(bad).toBeInstanceOf(ArtifactError);
    expect((bad as Error).message).toContain("index.json is not valid JSON");
    files.set("/missing.ociapp", { dev: 1, ino: 13, size: 1, mtimeMs: 1, digest: A });
    expect(await cache.resolve("/missing.ociapp")).toBe(A);
  });
});

describe("ArtifactCache and the artifact's protocol", () => {
  it("refuses an artifact built for another protocol, naming both versions and what to do", async () => {
    const digest = `sha256:${"c".repeat(64)}`;
    const cache = new ArtifactCache({
      readIndex: async () => ({ digest, protocol: 1 }),
      stat: async () => ({ dev: 1, ino: 1, size: 1, mtimeMs: 1 }),
    });
    const error = await cache.resolve("/old.ociapp").catch((reason: unknown) => reason);
    expect(error).toBeInstanceOf(ArtifactError);
    expect((error as Error).message).toBe(
      "artifact /old.ociapp was built with an SDK that speaks protocol 1; this runtime speaks protocol 2: rebuild it with ociapp-build 0.2 or later (and ociapp 0.2 or later in the app)",
    );
    const unknown = new ArtifactCache({
      readIndex: async () => ({ digest }),
      stat: async () => ({ dev: 1, ino: 2, size: 1, mtimeMs: 1 }),
    });
    expect(await unknown.resolve("/custom.ociapp")).toBe(digest);
  });
});
