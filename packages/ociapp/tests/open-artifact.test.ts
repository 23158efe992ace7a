import { execFileSync } from "node:child_process";
import { constants } from "node:fs";
import { mkdir, mkdtemp, open, readFile, rename, rm, symlink, unlink, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ArtifactFileError,
  inspectArtifact,
  openArtifact,
  openArtifactStream,
  statArtifact,
} from "ociapp/artifact";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openRegularFile } from "../src/artifact/open-artifact.js";
import { makeLayout, writeLayout } from "./artifact-fixtures.js";

// Artifact paths are opened only as regular files, and never block. Before this, a FIFO blocked the
// reader in open(2) for ever (and with it one of libuv's four thread-pool threads): each test here
// that involves a FIFO fails by timing out without O_NONBLOCK. afterAll opens every FIFO for writing,
// so that a reader stuck in such a failure is released instead of hanging the worker.

let dir = "";
let counter = 0;
const fifos: string[] = [];
const servers: Server[] = [];
const nextPath = (suffix = ".ociapp") => join(dir, `file-${++counter}${suffix}`);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ociapp-open-artifact-"));
});
afterAll(async () => {
  for (const fifo of fifos) {
    const writer = await open(fifo, constants.O_WRONLY | constants.O_NONBLOCK).catch(() => undefined);
    await writer?.close();
  }
  for (const server of servers) server.close();
  await rm(dir, { recursive: true, force: true });
});

function mkfifo(path: string): string {
  execFileSync("mkfifo", [path]);
  fifos.push(path);
  return path;
}

async function listenOn(path: string): Promise<string> {
  const server = createServer();
  servers.push(server);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, resolve);
  });
  return path;
}

async function artifactFile(): Promise<string> {
  const path = nextPath();
  await writeLayout(path, makeLayout().files);
  return path;
}

const readers = {
  statArtifact: (path: string) => statArtifact(path),
  openArtifact: async (path: string) => (await openArtifact(path)).close(),
  openArtifactStream: async (path: string) => (await openArtifactStream(path)).destroy(),
  inspectArtifact: (path: string) => inspectArtifact(path),
};

async function expectRefused(path: string, reason: string, why: RegExp): Promise<void> {
  for (const [name, read] of Object.entries(readers)) {
    const error = await read(path).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error, name).toBeInstanceOf(ArtifactFileError);
    const fileError = error as ArtifactFileError;
    expect(fileError.code).toBe("OCIAPP_ARTIFACT_FILE");
    expect(fileError.reason, name).toBe(reason);
    expect(fileError.path).toBe(path);
    expect(fileError.message, name).toMatch(why);
    expect(fileError.message).not.toContain("\n");
  }
}

describe("anything but a regular file is refused at once", () => {
  it("a FIFO with no writer", async () => {
    const fifo = mkfifo(nextPath());
    await expectRefused(fifo, "not-regular", /^cannot read artifact .*: it is a FIFO, not a regular file$/);
  });

  it("a symbolic link to a FIFO", async () => {
    const link = nextPath();
    await symlink(mkfifo(nextPath()), link);
    await expectRefused(link, "not-regular", /: it is a FIFO, not a regular file$/);
  });

  it("a Unix socket", async () => {
    const socket = await listenOn(nextPath(".sock"));
    await expectRefused(socket, "not-regular", /: it is a socket, not a regular file$/);
  });

  it("/dev/zero, a character device that would stream zeros for ever", async () => {
    await expectRefused("/dev/zero", "not-regular", /: it is a character device, not a regular file$/);
  });

  it("/proc/self/fd/N of an open pipe, as /dev/stdin is when a shell pipes into the command", async () => {
    // A FIFO opened read-write never blocks (Linux, fifo(7)): this process then holds a pipe
    // descriptor, whatever its own stdin is.
    const fifo = mkfifo(nextPath());
    const held = await open(fifo, constants.O_RDWR | constants.O_NONBLOCK);
    try {
      await expectRefused(`/proc/self/fd/${held.fd}`, "not-regular", /: it is a FIFO, not a regular file$/);
    } finally {
      await held.close();
    }
  });

  it("a directory", async () => {
    await expectRefused(dir, "not-regular", /: it is a directory, not a regular file$/);
  });

  it("a path that does not exist, or whose parent is a file", async () => {
    await expectRefused(join(dir, "nope.ociapp"), "missing", /: no such file$/);
    await expectRefused(join(await artifactFile(), "x"), "missing", /not a folder$/);
  });

  it("a path whose control characters are escaped in the message", async () => {
    const path = join(dir, "evil\n\u001b[2J.ociapp");
    await expectRefused(path, "missing", /evil\\u000a\\u001b\[2J\.ociapp: no such file$/);
  });
});

describe("a path that changes between the check and the open", () => {
  it("a file replaced by a FIFO after it was stat'ed is refused at once", async () => {
    const path = await artifactFile();
    const error = await openRegularFile(path, {}, async () => {
      await unlink(path);
      mkfifo(path);
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ArtifactFileError);
    expect((error as ArtifactFileError).message).toMatch(/: it is a FIFO, not a regular file$/);
  });

  it("a file replaced by a socket after it was stat'ed is refused", async () => {
    const path = await artifactFile();
    const error = await openRegularFile(path, {}, async () => {
      await unlink(path);
      await listenOn(path);
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ArtifactFileError);
    expect((error as ArtifactFileError).reason).toBe("not-regular");
  });

  it("a file that vanishes after it was stat'ed", async () => {
    const path = await artifactFile();
    const error = await openRegularFile(path, {}, () => unlink(path)).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ArtifactFileError);
    expect((error as ArtifactFileError).reason).toBe("missing");
  });

  it("a stream reads the file it opened, whatever the path names afterwards", async () => {
    const path = await artifactFile();
    const original = await readFile(path);
    const stream = await openArtifactStream(path, { highWaterMark: 1024 });
    const other = nextPath();
    await writeFile(other, "another file");
    await rename(other, path);
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).equals(original)).toBe(true);
    // The stream owned the handle and closed it at its end.
    expect(stream.closed).toBe(true);
  });
});

describe("regular files", () => {
  it("are read through the non-blocking handle, also through a symbolic link", async () => {
    const path = await artifactFile();
    const link = nextPath();
    await symlink(path, link);
    const handle = await openArtifact(link);
    try {
      const { size } = await handle.stat();
      const body = Buffer.alloc(size);
      const { bytesRead } = await handle.read(body, 0, size, 0);
      expect(bytesRead).toBe(size);
      expect(body.equals(await readFile(path))).toBe(true);
    } finally {
      await handle.close();
    }
    expect((await statArtifact(link)).isFile()).toBe(true);
    expect((await inspectArtifact(link)).title).toBe("echo-app");
  });

  it("an aborted signal rejects with its reason before anything is opened", async () => {
    const controller = new AbortController();
    controller.abort(new Error("stop"));
    const fifo = mkfifo(nextPath());
    await expect(openArtifact(fifo, { signal: controller.signal })).rejects.toThrow("stop");
    await expect(statArtifact(fifo, { signal: controller.signal })).rejects.toThrow("stop");
  });

  it("a folder of artifacts is not an artifact, even when it ends in .ociapp", async () => {
    const folder = nextPath();
    await mkdir(folder);
    await expectRefused(folder, "not-regular", /it is a directory/);
  });
});
