import { mkdtemp, rm, writeFile } from "node:fs/promises";
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
afterAll(async () => {
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
      stderr: `ociapp-build: error: no such file: ${join(work, "nope.ociapp")}\n`,
    });
    const folder = await runCliHere(["inspect", work]);
    expect(folder.stderr).toBe(`ociapp-build: error: invalid artifact: ${work} is not a regular file\n`);
  });
});

it("ociapp-build --version prints the package version", async () => {
  const result = await runCliHere(["--version"]);
  expect(result).toEqual({ exitCode: 0, stdout: "0.2.0\n", stderr: "" });
});
