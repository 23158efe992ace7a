import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { inspectArtifact, readArtifactIndex } from "ociapp/artifact";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { docker } from "../../../tests/engine/docker.js";
import { type BuildResult, build, CONTEXT_ANNOTATION } from "../src/index.js";
import { runCliHere } from "./helpers/cli.js";
import { type RunningApp, removeImage, startApp, uniqueImage } from "./helpers/container.js";
import { extractLayout } from "./helpers/oci.js";
import { ECHO_APP } from "./helpers/paths.js";
import { ensureSdkBuilt } from "./helpers/sdk.js";

// examples/echo-app (TypeScript, "ociapp": "workspace:*", zod) built once for this file, in managed
// mode, with the build script run on the host and the SDK packed from its node_modules.

let outputDir = "";
let image = "";
let result: BuildResult;
let firstBuildMs = 0;
let rebuild: { result: BuildResult; ms: number; dockerCalls: string[] };
let cachedRebuild: { result: BuildResult; log: string };
let running: RunningApp | undefined;
let work = "";

beforeAll(async () => {
  await ensureSdkBuilt();
  work = await mkdtemp(join(tmpdir(), "ociapp-build-echo-"));
  outputDir = join(work, "out");
  image = uniqueImage("echo-app");
  const started = performance.now();
  result = await build({ projectRoot: ECHO_APP, outputDir, network: "host", image });
  firstBuildMs = performance.now() - started;

  // The rebuild with nothing changed follows at once (it is asserted on below): nothing of the
  // inputs, the SDK's dist included, may change in between. Its docker calls go through a wrapper
  // that records them.
  const wrapper = join(work, "bin");
  const callLog = join(work, "docker-calls.log");
  await mkdir(wrapper);
  const realDocker = (await execa("sh", ["-c", "command -v docker"])).stdout.trim();
  await writeFile(
    join(wrapper, "docker"),
    `#!/bin/sh\nprintf '%s\\n' "$*" >> '${callLog}'\nexec '${realDocker}' "$@"\n`,
    { mode: 0o755 },
  );
  const again = performance.now();
  const second = await build({
    projectRoot: ECHO_APP,
    outputDir,
    network: "host",
    image,
    env: { PATH: `${wrapper}:${process.env.PATH ?? ""}` },
  });
  const ms = performance.now() - again;
  const dockerCalls = (await readFile(callLog, "utf8").catch(() => "")).trim().split("\n");
  rebuild = { result: second, ms, dockerCalls };

  // Built into another folder (no artifact to reuse there): buildx runs, from its layer cache.
  let log = "";
  const third = await build({
    projectRoot: ECHO_APP,
    outputDir: join(work, "again"),
    network: "host",
    image,
    progress: "plain",
    onProgress: (chunk) => {
      log += chunk;
    },
  });
  cachedRebuild = { result: third, log };
});

afterAll(async () => {
  await running?.stop();
  await removeImage(image);
  if (work) await rm(work, { recursive: true, force: true });
});

describe("examples/echo-app", () => {
  it("writes <name>-<version>.ociapp and reports its path, size, digest and image", async () => {
    expect(result.path).toBe(join(outputDir, "echo-app-0.1.0.ociapp"));
    expect(result.bytes).toBe((await stat(result.path)).size);
    expect(result.digest).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect(result.digest).toBe((await readArtifactIndex(result.path)).digest);
    expect(result.image).toBe(image);
    console.log(
      `echo-app first build in this run: ${(firstBuildMs / 1000).toFixed(1)} s, ${result.bytes} bytes`,
    );
  });

  it("is a valid OCI image layout: oci-layout, index.json, every blob's sha256 matching its name", async () => {
    const layout = await extractLayout(result.path);
    expect(layout.names.slice(-2).sort()).toEqual(["index.json", "oci-layout"]);
    expect(layout.json.get("oci-layout")).toEqual({ imageLayoutVersion: "1.0.0" });
    for (const name of layout.names) {
      if (name === "index.json" || name === "oci-layout") continue;
      expect(name).toMatch(/^blobs\/sha256\/[a-f0-9]{64}$/);
      expect(layout.blobHashes.get(name)).toBe(name.slice("blobs/sha256/".length));
    }

    const index = layout.json.get("index.json") as { manifests: { digest: string; annotations: object }[] };
    expect(index.manifests).toHaveLength(1);
    expect(index.manifests[0]?.digest).toBe(result.digest);
    expect(index.manifests[0]?.annotations).toMatchObject({
      "io.containerd.image.name": `docker.io/${image}`,
    });

    const manifest = layout.json.get(`blobs/sha256/${result.digest.slice(7)}`) as {
      config: { digest: string };
      layers: { mediaType: string }[];
      annotations: Record<string, string>;
    };
    expect(manifest.annotations).toMatchObject({
      "org.opencontainers.image.title": "echo-app",
      "org.opencontainers.image.version": "0.1.0",
      "dev.ociapp.entrypoint": "dist/main.js#app",
      // From the packed SDK's package.json ("ociapp": {"protocol": 2}).
      "dev.ociapp.protocol": "2",
    });
    for (const layer of manifest.layers)
      expect(layer.mediaType).toBe("application/vnd.oci.image.layer.v1.tar+gzip");

    const config = layout.json.get(`blobs/sha256/${manifest.config.digest.slice(7)}`) as {
      config: { User: string; WorkingDir: string; Entrypoint: string[]; Env: string[] };
    };
    expect(config.config.User).toBe("10001:10001");
    expect(config.config.WorkingDir).toBe("/app");
    // The bundled entry (bundle.engine.test.ts): esbuild's one module for the server, SDK, app and zod.
    expect(result.entry.bundled).toBe(true);
    expect(config.config.Entrypoint).toEqual([
      "node",
      "/app/.ociapp/serve.mjs",
      "serve",
      "--app",
      "dist/main.js#app",
    ]);
    expect(config.config.Env).toContain("NODE_ENV=production");
  });

  it("ociapp-build inspect reads it without the engine", async () => {
    const { exitCode, stdout } = await runCliHere(["inspect", result.path, "--json"]);
    expect(exitCode).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({
      digest: result.digest,
      bytes: result.bytes,
      title: "echo-app",
      version: "0.1.0",
      entrypoint: "dist/main.js#app",
      refName: `docker.io/${image}`,
      protocol: 2,
    });
  });

  it("docker load accepts it, and a container with no network connects to the host's socket and answers", async () => {
    expect(await docker(["load", "-i", result.path])).toContain(image);
    // With the containerd image store, the image's ID is the artifact's digest.
    expect((await docker(["image", "inspect", "--format", "{{.Id}}", image])).trim()).toBe(result.digest);

    running = await startApp(image);
    expect((await docker(["inspect", "--format", "{{.HostConfig.NetworkMode}}", running.id])).trim()).toBe(
      "none",
    );
    expect(running.hello).toMatchObject({
      type: "hello",
      protocol: 2,
      role: "app",
      app: { name: "echo-app", version: "0.1.0" },
      sdk: { name: "ociapp", version: "0.2.0" },
    });
    expect(await running.request({ value: "hello from the host" })).toEqual({
      type: "response",
      id: "r1",
      payload: { value: "hello from the host" },
    });

    const invalid = await running.request({ value: 42 }, "bad");
    expect(invalid).toMatchObject({ type: "error", id: "bad", error: { type: "ValidationError" } });

    expect((await docker(["exec", running.id, "id", "-u"])).trim()).toBe("10001");
  });

  it("a rebuild with nothing changed reuses the artifact: buildx does not run", async () => {
    console.log(`echo-app no-change rebuild: ${(rebuild.ms / 1000).toFixed(1)} s (the app's tsc included)`);
    expect(rebuild.result).toEqual({ ...result, reused: true });
    expect(result.reused).toBe(false);
    expect(result.native).toEqual([]);
    // The engine was asked for the base image's ID, and buildx for its version; never to build.
    expect(rebuild.dockerCalls.some((call) => call.startsWith("image inspect"))).toBe(true);
    expect(rebuild.dockerCalls.filter((call) => call.startsWith("buildx build"))).toEqual([]);
    const info = await inspectArtifact(result.path);
    expect(info.annotations[CONTEXT_ANNOTATION]).toMatch(/^sha256:[a-f0-9]{64}$/);
  });

  it("a build of the same context elsewhere is served from buildx's layer cache, with the same digest", async () => {
    const { log } = cachedRebuild;
    expect(cachedRebuild.result.digest).toBe(result.digest);
    expect(cachedRebuild.result.reused).toBe(false);
    const install = /^#(\d+) \[stage-0 \d+\/\d+\] RUN .*npm install/m.exec(log);
    expect(install).not.toBeNull();
    expect(log).toMatch(new RegExp(`^#${install?.[1]} CACHED$`, "m"));
    expect(log).not.toMatch(/^#\d+ \d+\.\d+ added \d+ packages/m);
  });

  it("checks the entrypoint in the image before it is written", () => {
    expect(cachedRebuild.log).toMatch(/"check", "--app", "dist\/main\.js#app"\]/);
  });
});
