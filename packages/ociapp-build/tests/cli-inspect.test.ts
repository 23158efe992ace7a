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

describe("ociapp-build inspect of a hostile artifact", () => {
  // Each value would, printed raw: clear the screen and retitle the terminal (ESC, OSC ... BEL), end
  // the line and forge one of inspect's own (CR LF), start an 8-bit CSI (U+009B), or reverse the rest
  // of the line (U+202E RLO, U+2066 LRI). DEL and U+2028 too.
  const forged =
    "\u001b[2J\u001b]0;owned\u0007\r\ndigest:     sha256:forged\u009b31m\u202eevil\u2066\u007f\u2028";
  const escaped =
    "\\u001b[2J\\u001b]0;owned\\u0007\\u000d\\u000adigest:     sha256:forged\\u009b31m\\u202eevil\\u2066\\u007f\\u2028";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the characters output must not carry raw
  const UNSAFE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

  async function hostileArtifact(): Promise<string> {
    const layout = makeLayout({
      manifest: (m) => {
        Object.assign(m.annotations as object, {
          "org.opencontainers.image.title": `app${forged}`,
          "org.opencontainers.image.version": `1.0.0${forged}`,
          "dev.ociapp.entrypoint": `main.js${forged}`,
        });
        const layers = m.layers as { mediaType: string }[];
        layers[0]!.mediaType = `application/x${forged}`.slice(0, 256);
      },
      index: (i) => {
        const first = (i.manifests as { annotations: Record<string, string> }[])[0]!;
        first.annotations["io.containerd.image.name"] = `docker.io/library/app:1${forged}`;
      },
    });
    const path = join(work, "hostile.ociapp");
    await writeLayout(path, layout.files);
    return path;
  }

  it("shows every string the artifact controls escaped, one line per field", async () => {
    const path = await hostileArtifact();
    const { exitCode, stdout } = await runCliHere(["inspect", path]);
    expect(exitCode).toBe(0);
    expect(stdout).not.toMatch(UNSAFE);
    const lines = stdout.trimEnd().split("\n");
    expect(lines.map((line) => line.slice(0, 12))).toEqual([
      "file:       ",
      "name:       ",
      "version:    ",
      "entrypoint: ",
      "image:      ",
      "digest:     ",
      "bytes:      ",
      "layers:     ",
      expect.stringMatching(/^ {2}sha256:/),
      expect.stringMatching(/^ {2}sha256:/),
    ]);
    expect(lines).toContain(`name:       app${escaped}`);
    expect(lines).toContain(`version:    1.0.0${escaped}`);
    expect(lines).toContain(`entrypoint: main.js${escaped}`);
    expect(lines).toContain(`image:      docker.io/library/app:1${escaped}`);
    expect(lines[8]).toMatch(/ {2}application\/x\\u001b\[2J/);
    expect(lines.filter((line) => line.startsWith("digest:"))).toHaveLength(1);
  });

  it("--json escapes them too, and parses back to the artifact's values", async () => {
    const path = await hostileArtifact();
    const { exitCode, stdout } = await runCliHere(["inspect", path, "--json"]);
    expect(exitCode).toBe(0);
    expect(stdout.endsWith("\n")).toBe(true);
    expect(stdout.slice(0, -1)).not.toMatch(UNSAFE);
    expect(stdout.slice(0, -1)).not.toContain("\n");
    const info = JSON.parse(stdout) as { title: string; refName: string; layers: { mediaType: string }[] };
    expect(info.title).toBe(`app${forged}`);
    expect(info.refName).toBe(`docker.io/library/app:1${forged}`);
    expect(info.layers[0]!.mediaType).toBe(`application/x${forged}`);
  });

  it("a file name with control characters is shown escaped", async () => {
    const path = join(work, "evil\u001b[2J\n.ociapp");
    await writeLayout(path, makeLayout().files);
    const human = await runCliHere(["inspect", path]);
    expect(human.stdout.split("\n")[0]).toBe(`file:       ${work}/evil\\u001b[2J\\u000a.ociapp`);
    const missing = await runCliHere(["inspect", `${path}.gone`]);
    expect(missing.stderr).toBe(
      `ociapp-build: error: cannot read artifact ${work}/evil\\u001b[2J\\u000a.ociapp.gone: no such file\n`,
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
