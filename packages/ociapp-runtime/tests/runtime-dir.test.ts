import { spawnSync } from "node:child_process";
import { chmod, lstat, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { OptionsError } from "../src/errors.js";
import { type OwnerIdentity, ownIdentity } from "../src/host/owner.js";
import {
  defaultRuntimeDir,
  ensurePrivateDir,
  HOST_SOCKET,
  makeContainerFolder,
  removeContainerFolder,
  sweepFolders,
  writeOwnerRecord,
} from "../src/host/runtime-dir.js";
import { OneShotListener } from "../src/protocol/listener.js";

const isRoot = process.getuid?.() === 0;

/** Runs a short Node script as the unprivileged user `nobody` (root only) and returns its stdout. */
function asNobody(script: string, ...args: string[]): string {
  const run = spawnSync(
    "setpriv",
    ["--reuid=nobody", "--regid=nogroup", "--clear-groups", process.execPath, "-e", script, ...args],
    {
      encoding: "utf8",
    },
  );
  if (run.error) throw run.error;
  return run.stdout.trim();
}

describe("the private runtime folder", () => {
  let work: string;
  beforeEach(async () => {
    work = await mkdtemp(join(tmpdir(), "ort-dir-"));
  });
  afterEach(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it("defaults to /run/ociapp for root, else $XDG_RUNTIME_DIR/ociapp, else ociapp-<uid> in tmpdir", () => {
    if (isRoot) expect(defaultRuntimeDir()).toBe("/run/ociapp");
    else expect(defaultRuntimeDir()).toMatch(/\/ociapp(-\d+)?$/);
  });

  it("is created 0700 and accepted as it is", async () => {
    const parent = join(work, "runtime");
    await ensurePrivateDir(parent);
    expect((await lstat(parent)).mode & 0o777).toBe(0o700);
    await ensurePrivateDir(parent);
  });

  it("refuses a symbolic link, a file, a folder open to others, naming the path and what is wrong", async () => {
    const target = join(work, "elsewhere");
    await mkdir(target, { mode: 0o700 });
    const link = join(work, "link");
    await symlink(target, link);
    await expect(ensurePrivateDir(link)).rejects.toThrow(
      new RegExp(`Runtime folder ${link} is a symbolic link`),
    );
    const file = join(work, "file");
    await writeFile(file, "x");
    await expect(ensurePrivateDir(file)).rejects.toThrow(`Runtime folder ${file} is not a directory`);
    const open = join(work, "open");
    await mkdir(open);
    await chmod(open, 0o733);
    const error = await ensurePrivateDir(open).catch((reason: unknown) => reason);
    expect(error).toBeInstanceOf(OptionsError);
    expect((error as Error).message).toBe(
      `Runtime folder ${open} has mode 0733; it must give group and others nothing (chmod 700 it)`,
    );
  });

  it.runIf(isRoot)(
    "refuses a folder another user made first (the pre-made /tmp/ociapp-<uid> attack)",
    async () => {
      const squatted = join(work, "squatted");
      await mkdir(squatted, { mode: 0o700 });
      spawnSync("chown", ["nobody", squatted]);
      await expect(ensurePrivateDir(squatted)).rejects.toThrow(
        /is owned by uid \d+, not by this process's uid 0/,
      );
    },
  );

  it.runIf(isRoot)(
    "keeps other local users out: they can neither connect to a container's socket nor bind one first",
    async () => {
      const parent = join(work, "runtime");
      await chmod(work, 0o755);
      const folder = await makeContainerFolder(parent, "0123456789ab-");
      const listener = await OneShotListener.listen(join(folder, HOST_SOCKET));
      try {
        const probe = `
        const net = require("node:net"); const fs = require("node:fs");
        const [socketPath, folder] = process.argv.slice(1);
        const out = {};
        try { fs.readdirSync(folder); out.list = "ok" } catch (e) { out.list = e.code }
        try { fs.writeFileSync(folder + "/app.sock", "x"); out.create = "ok" } catch (e) { out.create = e.code }
        const s = net.connect(socketPath);
        s.on("connect", () => { out.connect = "ok"; console.log(JSON.stringify(out)); process.exit(0) });
        s.on("error", (e) => { out.connect = e.code; console.log(JSON.stringify(out)); process.exit(0) });`;
        const result = JSON.parse(asNobody(probe, join(folder, HOST_SOCKET), folder)) as Record<
          string,
          string
        >;
        expect(result).toEqual({ list: "EACCES", create: "EACCES", connect: "EACCES" });
      } finally {
        listener.close();
        await removeContainerFolder(folder);
      }
    },
  );
});

describe("OneShotListener", () => {
  let work: string;
  beforeEach(async () => {
    work = await mkdtemp(join(tmpdir(), "ort-listen-"));
  });
  afterEach(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it("accepts exactly one connection, then nothing connects any more (the socket file is gone)", async () => {
    const path = join(work, HOST_SOCKET);
    const listener = await OneShotListener.listen(path);
    expect((await lstat(path)).mode & 0o777).toBe(0o666);
    const { connect } = await import("node:net");
    const first = connect(path);
    const accepted = await listener.accepted;
    expect(accepted).toBeDefined();
    const again = await new Promise<string>((resolve) => {
      const retry = connect(path);
      retry.once("connect", () => resolve("connected"));
      retry.once("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? "error"));
    });
    expect(["ENOENT", "ECONNREFUSED"]).toContain(again);
    expect(await readdir(work)).toEqual([]);
    first.destroy();
    accepted.destroy();
  });

  it("rejects its accepted promise when closed before a connection", async () => {
    const listener = await OneShotListener.listen(join(work, HOST_SOCKET));
    listener.close();
    await expect(listener.accepted).rejects.toThrow("closed before the container connected");
  });
});

describe("container folders and the sweep", () => {
  let work: string;
  beforeEach(async () => {
    work = await mkdtemp(join(tmpdir(), "ort-sweep-"));
  });
  afterEach(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it("removes a dead runtime's folders and record, and nothing outside the parent, never following a link", async () => {
    const parent = join(work, "runtime");
    const outside = join(work, "outside");
    await mkdir(outside);
    await writeFile(join(outside, HOST_SOCKET), "must stay");
    await writeFile(join(outside, "precious"), "must stay");
    const deadOwner = { ...ownIdentity(), pid: 999_999, start: "1" };
    await writeOwnerRecord(parent, "0123456789ab", deadOwner);
    await writeOwnerRecord(parent, "ba9876543210", ownIdentity());
    const folder = await makeContainerFolder(parent, "0123456789ab-");
    await writeFile(join(folder, HOST_SOCKET), "");
    // A folder name of the dead runtime that is a link to a folder outside the parent.
    await symlink(outside, join(parent, "0123456789ab-AbCdEf"));
    const live = await makeContainerFolder(parent, "ba9876543210-");
    const dead = (owner: OwnerIdentity) => owner.pid === 999_999;
    expect(await sweepFolders(parent, dead)).toBe(2);
    expect((await readdir(parent)).sort()).toEqual(
      [live.slice(parent.length + 1), "ba9876543210.owner"].sort(),
    );
    expect((await readdir(outside)).sort()).toEqual([HOST_SOCKET, "precious"]);
  });

  it("trusts no owner record that is a link, too large or malformed", async () => {
    const parent = join(work, "runtime");
    await ensurePrivateDir(parent);
    const target = join(work, "record");
    await writeFile(target, JSON.stringify({ ...ownIdentity(), pid: 999_999, start: "1" }));
    await symlink(target, join(parent, "0123456789ab.owner"));
    await writeFile(join(parent, "aaaaaaaaaaaa.owner"), "x".repeat(2048));
    await writeFile(join(parent, "bbbbbbbbbbbb.owner"), "{}");
    for (const prefix of ["0123456789ab", "aaaaaaaaaaaa", "bbbbbbbbbbbb"])
      await makeContainerFolder(parent, `${prefix}-`);
    expect(await sweepFolders(parent, () => true)).toBe(0);
    expect(await readdir(parent)).toHaveLength(6);
  });

  it("sweeps nothing in a parent that is not private", async () => {
    const parent = join(work, "open");
    await mkdir(parent);
    await chmod(parent, 0o777);
    await mkdir(join(parent, "0123456789ab-AbCdEf"));
    await writeFile(join(parent, "0123456789ab.owner"), JSON.stringify({ ...ownIdentity(), pid: 999_999 }));
    expect(await sweepFolders(parent, () => true)).toBe(0);
    expect((await readdir(parent)).sort()).toEqual(["0123456789ab-AbCdEf", "0123456789ab.owner"]);
  });
});
