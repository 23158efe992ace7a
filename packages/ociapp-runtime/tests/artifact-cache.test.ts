import { execFileSync } from "node:child_process";
import { constants } from "node:fs";
import { mkdtemp, open, readFile, rm, symlink, unlink } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readArtifactIndex } from "ociapp/artifact";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeLayout, writeLayout } from "../../ociapp/tests/artifact-fixtures.js";
import { ArtifactCache, type FileIdentity, openArtifactForLoad } from "../src/artifacts/artifact-cache.js";
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

describe("ArtifactCache and paths that are not regular files", () => {
  // Before, the identity check was a plain stat(2) and the read a plain open(2): a FIFO passed the
  // first and blocked the second for ever. afterAll releases a reader stuck that way, should it regress.
  let dir = "";
  const fifos: string[] = [];
  const servers: Server[] = [];
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "ociapp-artifact-cache-"));
  });
  afterAll(async () => {
    for (const fifo of fifos) {
      const writer = await open(fifo, constants.O_WRONLY | constants.O_NONBLOCK).catch(() => undefined);
      await writer?.close();
    }
    for (const server of servers) server.close();
    await rm(dir, { recursive: true, force: true });
  });
  const mkfifo = (path: string) => {
    execFileSync("mkfifo", [path]);
    fifos.push(path);
    return path;
  };
  const artifactFile = async (name: string) => {
    const path = join(dir, name);
    const layout = makeLayout();
    await writeLayout(path, layout.files);
    return { path, digest: layout.manifestDigest };
  };

  it("refuses a FIFO, a link to one, a socket, /dev/zero and a directory without reading them", async () => {
    const reads: string[] = [];
    const cache = new ArtifactCache({
      readIndex: async (path) => {
        reads.push(path);
        return { digest: A };
      },
    });
    const fifo = mkfifo(join(dir, "fifo.ociapp"));
    const link = join(dir, "link.ociapp");
    await symlink(fifo, link);
    const socket = join(dir, "socket.ociapp");
    const server = createServer();
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    const cases: [string, string][] = [
      [fifo, "a FIFO"],
      [link, "a FIFO"],
      [socket, "a socket"],
      ["/dev/zero", "a character device"],
      [dir, "a directory"],
    ];
    for (const [path, what] of cases) {
      const error = await cache.resolve(path).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(ArtifactError);
      expect((error as ArtifactError).path).toBe(path);
      expect((error as Error).message).toBe(
        `cannot read artifact ${path}: it is ${what}, not a regular file`,
      );
    }
    expect(reads).toEqual([]);
  });

  it("refuses at once a file swapped for a FIFO between its identity check and its read", async () => {
    const { path } = await artifactFile("swapped.ociapp");
    const cache = new ArtifactCache({
      readIndex: async (target, options) => {
        await unlink(target);
        mkfifo(target);
        return readArtifactIndex(target, options);
      },
    });
    const error = await cache.resolve(path).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ArtifactError);
    expect((error as Error).message).toBe(`cannot read artifact ${path}: it is a FIFO, not a regular file`);
  });

  it("reads a regular file, also through a symbolic link", async () => {
    const { path, digest } = await artifactFile("real.ociapp");
    const link = join(dir, "real-link.ociapp");
    await symlink(path, link);
    const cache = new ArtifactCache({ readIndex: readArtifactIndex });
    expect(await cache.resolve(link)).toBe(digest);
  });
});

describe("openArtifactForLoad (the bytes docker load reads)", () => {
  let dir = "";
  let fifo = "";
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "ociapp-artifact-load-"));
    fifo = join(dir, "fifo.ociapp");
    execFileSync("mkfifo", [fifo]);
  });
  afterAll(async () => {
    const writer = await open(fifo, constants.O_WRONLY | constants.O_NONBLOCK).catch(() => undefined);
    await writer?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("rejects with ArtifactError at once for a FIFO, /dev/zero or a missing path", async () => {
    for (const [path, why] of [
      [fifo, "it is a FIFO, not a regular file"],
      ["/dev/zero", "it is a character device, not a regular file"],
      [join(dir, "gone.ociapp"), "no such file"],
    ] as const) {
      const error = await openArtifactForLoad(path).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(ArtifactError);
      expect((error as Error).message).toBe(`cannot read artifact ${path}: ${why}`);
    }
  });

  it("streams a regular file's bytes, and leaves an abort's reason as it is", async () => {
    const path = join(dir, "real.ociapp");
    await writeLayout(path, makeLayout().files);
    const chunks: Buffer[] = [];
    for await (const chunk of await openArtifactForLoad(path)) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).equals(await readFile(path))).toBe(true);
    const reason = new Error("closing");
    await expect(openArtifactForLoad(path, AbortSignal.abort(reason))).rejects.toBe(reason);
  });
});
