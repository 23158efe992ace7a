import { execFileSync } from "node:child_process";
import { constants } from "node:fs";
import { mkdtemp, open, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeLayout, writeLayout } from "../../ociapp/tests/artifact-fixtures.js";
import { runCli, runCliHere } from "./helpers/cli.js";

// `ociapp-build inspect` reads the file only; real buildx artifacts are inspected in the engine tests.

let work = "";
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "ociapp-build-inspect-"));
});
const fifos: string[] = [];
afterAll(async () => {
  // Releases a CLI stuck in open(2) on a FIFO, should the refusal ever regress (it runs after a
  // timed-out test too): the child then reads an empty archive and exits.
  for (const fifo of fifos) {
    const writer = await open(fifo, constants.O_WRONLY | constants.O_NONBLOCK).catch(() => undefined);
    await writer?.close();
  }
  await rm(work, { recursive: true, force: true });
});

describe("ociapp-build inspect", () => {
  it("prints name, version, entrypoint, digest, bytes and layers", async () => {
    const layout = makeLayout();
    const path = join(work, "synthetic.ociapp");
    await writeLayout(path, layout.files);
    const human = await runCli(["inspect", path]);
    expect(human.exitCode).toBe(0);
    expect(human.stdout).toContain("name:       echo-app\n");
    expect(human.stdout).toContain("version:    0.1.0\n");
    expect(human.stdout).toContain("entrypoint: dist/main.js#app\n");
    expect(human.stdout).toContain(`digest:     ${layout.manifestDigest}\n`);
    expect(human.stdout).toMatch(/bytes: {6}\d+ \(/);
    expect(human.stdout).toContain("layers:     2\n");
    for (const layer of layout.layers) expect(human.stdout).toContain(layer.digest);

    const json = await runCliHere(["inspect", path, "--json"]);
    expect(json.exitCode).toBe(0);
    const info = JSON.parse(json.stdout) as { digest: string; title: string; layers: unknown[] };
    expect(json.stdout.trim().split("\n")).toHaveLength(1);
    expect(info).toMatchObject({
      digest: layout.manifestDigest,
      title: "echo-app",
      entrypoint: "dist/main.js#app",
    });
    expect(info.layers).toEqual(layout.layers);
  });

  it("rejects a malformed file with one line", async () => {
    const path = join(work, "garbage.ociapp");
    await writeFile(path, Buffer.alloc(2048, 7));
    const result = await runCli(["inspect", path]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(
      /^ociapp-build: error: invalid artifact: bad tar header checksum at byte 0 .*\n$/,
    );
  });

  it("a missing file", async () => {
    const result = await runCliHere(["inspect", join(work, "nope.ociapp")]);
    expect(result).toEqual({
      exitCode: 1,
      stdout: "",
      stderr: `ociapp-build: error: cannot read artifact ${join(work, "nope.ociapp")}: no such file\n`,
    });
    const folder = await runCliHere(["inspect", work]);
    expect(folder.stderr).toBe(
      `ociapp-build: error: cannot read artifact ${work}: it is a directory, not a regular file\n`,
    );
  });
});

describe("ociapp-build inspect of something other than a regular file exits at once", () => {
  // Before, `inspect` of a FIFO without a writer blocked in open(2) for ever (the CLI had to be
  // killed). A child process: a blocked thread-pool thread must not be this test process's.
  it("a FIFO, a symbolic link to one, /dev/zero and the CLI's own stdin", async () => {
    const fifo = join(work, "pipe.ociapp");
    execFileSync("mkfifo", [fifo]);
    fifos.push(fifo);
    const link = join(work, "link.ociapp");
    await symlink(fifo, link);
    const cases: [string, string][] = [
      [fifo, "a FIFO"],
      [link, "a FIFO"],
      ["/dev/zero", "a character device"],
    ];
    for (const [path, what] of cases) {
      const result = await runCli(["inspect", path], { timeout: 60_000 });
      expect(result).toEqual({
        exitCode: 1,
        stdout: "",
        stderr: `ociapp-build: error: cannot read artifact ${path}: it is ${what}, not a regular file\n`,
      });
    }
    // The child's stdin is a pipe (or socket) from this process that never ends.
    const stdin = await runCli(["inspect", "/dev/stdin"], { timeout: 60_000 });
    expect(stdin.exitCode).toBe(1);
    expect(stdin.stderr).toMatch(/^ociapp-build: error: cannot read artifact \/dev\/stdin: it is .*\n$/);
  });
});

it("ociapp-build --version prints the package version", async () => {
  const result = await runCliHere(["--version"]);
  expect(result).toEqual({ exitCode: 0, stdout: "0.2.0\n", stderr: "" });
});
