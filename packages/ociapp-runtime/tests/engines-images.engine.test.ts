import { execFile } from "node:child_process";
import { copyFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { artifactReference } from "../src/images/names.js";
import { DockerEngine, Runtime } from "../src/index.js";
import { type FixtureProject, fixtureProject } from "./support/fixture-build.js";
import type { Reply } from "./support/outcomes.js";

// The same references make Docker's classic image store and Podman work: a load and a call on each
// (the engines come from scripts/engines/*.sh, which start them when they are not running). Their
// other differences (Podman's events, OOM flag, kill status, attach errors) are not covered here.

const execFileAsync = promisify(execFile);
const SCRIPTS = fileURLToPath(new URL("../../../scripts/engines/", import.meta.url));

const ENGINES = [
  { name: "classic", script: "classic-dockerd.sh", store: "classic" },
  { name: "podman", script: "podman.sh", store: "podman" },
] as const;

/** `up` (idempotent), then the socket path `env` prints (export DOCKER_HOST=unix://...). */
async function engineSocket(script: string): Promise<string> {
  await execFileAsync("bash", [join(SCRIPTS, script), "up"], { timeout: 300_000 });
  const { stdout } = await execFileAsync("bash", [join(SCRIPTS, script), "env"], { timeout: 30_000 });
  const match = /DOCKER_HOST=unix:\/\/(\S+)/.exec(stdout);
  if (!match) throw new Error(`${script} env printed no unix socket: ${stdout}`);
  return match[1] as string;
}

describe.each(ENGINES)("images on $name", ({ script, store }) => {
  let engine: DockerEngine;
  let socket: string;
  let fixture: FixtureProject;
  let work: string;
  let socketDir: string;
  const artifacts: { path: string; digest: string }[] = [];

  beforeAll(async () => {
    socket = await engineSocket(script);
    engine = new DockerEngine({ socketPath: socket });
    work = await mkdtemp(join(tmpdir(), `ort-${store}-`));
    socketDir = await mkdtemp(join(tmpdir(), "ort-eng-"));
    fixture = await fixtureProject();
    for (let i = 0; i < 2; i++) {
      if (i > 0) await fixture.change();
      const built = await fixture.build();
      const path = join(work, `build-${i}.ociapp`);
      await copyFile(built.path, path);
      artifacts.push({ path, digest: built.digest });
    }
  });

  afterAll(async () => {
    if (engine) {
      for (const image of await engine.listImages()) {
        if (image.artifacts.some((digest) => artifacts.some((artifact) => artifact.digest === digest))) {
          await engine.removeImageNames(image.names);
        }
      }
      const left = await engine.listImages();
      expect(left.filter((image) => image.names.some((name) => name.includes("/loading:")))).toEqual([]);
    }
    await fixture?.remove();
    if (work) await rm(work, { recursive: true, force: true });
    if (socketDir) await rm(socketDir, { recursive: true, force: true });
  });

  it("loads two same-name builds under the runtime's references and runs calls on both, alternating", async () => {
    await using rt = new Runtime({ engine, socketDir });
    for (let round = 0; round < 2; round++) {
      for (const artifact of artifacts) {
        const reply = await rt.execute<Reply>(artifact.path, { op: "echo", value: `${store}-${round}` });
        expect(reply.value).toBe(`${store}-${round}`);
      }
    }
    expect(engine.flavour?.store).toBe(store);
    expect(rt.stats().artifacts.map((stats) => stats.imageLoads)).toEqual([1, 1]);
    const images = await engine.listImages();
    for (const artifact of artifacts) {
      const image = images.find((entry) => entry.artifacts.includes(artifact.digest));
      expect(image?.names).toContain(artifactReference(artifact.digest));
      expect(await engine.hasImage(artifact.digest)).toBe(true);
    }
    // The artifacts' own name (behaviours-app:<version>) was never applied.
    const { stdout } = await execFileAsync("docker", [
      "-H",
      `unix://${socket}`,
      "images",
      "--format",
      "{{.Repository}}:{{.Tag}}",
    ]);
    expect(stdout.split("\n").filter((name) => name.includes("behaviours-app"))).toEqual([]);
  });
});
