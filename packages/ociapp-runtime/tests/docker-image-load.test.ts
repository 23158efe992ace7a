import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ArtifactError, DockerEngine } from "../src/index.js";
import { tinyImage, untar } from "./support/oci-tar.js";

// A stat that takes its time, as on a busy machine: the load asks the artifact's size for progress.
const slowStat = vi.hoisted(() => ({ ms: 0 }));
vi.mock("node:fs/promises", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs/promises")>();
  const stat: typeof actual.stat = (async (...args: Parameters<typeof actual.stat>) => {
    if (slowStat.ms > 0) await new Promise((resolve) => setTimeout(resolve, slowStat.ms));
    return actual.stat(...args);
  }) as typeof actual.stat;
  return { ...actual, stat };
});

// DockerEngine's load protocol against a fake engine on a Unix socket, which records every request:
// what the engine receives, the order of tags, and what is removed after a failure.

interface Scenario {
  /** Docker's classic store (no containerd snapshotter) instead of the containerd store. */
  classic?: boolean;
  /** The load answer's lines. */
  answer: (name: string) => string;
  /** The image ID inspect reports for the loading name. */
  id: (manifest: string, config: string) => string;
}

describe("DockerEngine.loadImage against a fake engine", () => {
  let dir: string;
  let server: Server;
  let log: string[];
  let body: Buffer;
  let scenario: Scenario;
  let image: Awaited<ReturnType<typeof tinyImage>>;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "ort-fake-load-"));
    log = [];
    body = Buffer.alloc(0);
    image = await tinyImage();
    await writeFile(join(dir, "a.ociapp"), image.tarball);
    server = createServer((request, response) => {
      const url = new URL(request.url ?? "/", "http://engine");
      const path = decodeURIComponent(url.pathname);
      const json = (status: number, value: unknown) => {
        response.writeHead(status, { "content-type": "application/json" });
        response.end(JSON.stringify(value));
      };
      if (path === "/info") {
        json(200, {
          ServerVersion: "26.1.5",
          DriverStatus: scenario.classic ? [] : [["driver-type", "io.containerd.snapshotter.v1"]],
        });
      } else if (path === "/version") {
        json(200, { Version: "26.1.5" });
      } else if (path === "/images/load") {
        const chunks: Buffer[] = [];
        request.on("data", (chunk: Buffer) => chunks.push(chunk));
        request.on("end", async () => {
          body = Buffer.concat(chunks);
          const index = JSON.parse(((await untar(body)).get("index.json") as Buffer).toString());
          const name = index.manifests[0].annotations["io.containerd.image.name"];
          log.push(`load ${name}`);
          response.writeHead(200, { "content-type": "application/json" });
          response.end(scenario.answer(name));
        });
      } else if (request.method === "GET" && path.endsWith("/json")) {
        const name = path.slice("/images/".length, -"/json".length);
        log.push(`inspect ${name}`);
        json(200, { Id: scenario.id(image.manifestDigest, image.configDigest), RepoTags: [name] });
      } else if (request.method === "POST" && path.endsWith("/tag")) {
        log.push(
          `tag ${url.searchParams.get("repo")}:${url.searchParams.get("tag")?.replace(/-\d+$/, "-<ms>")}`,
        );
        json(201, {});
      } else if (request.method === "DELETE" && path.startsWith("/images/")) {
        log.push(`delete ${path.slice("/images/".length).replace(/:\d+-[a-f0-9]+$/, ":<loading>")}`);
        json(200, [{ Untagged: path }]);
      } else {
        json(404, { message: `no route ${request.method} ${path}` });
      }
    });
    await new Promise<void>((resolve) => server.listen(join(dir, "engine.sock"), resolve));
  });

  afterEach(async () => {
    await new Promise((resolve) => server.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  const load = () =>
    new DockerEngine({ socketPath: join(dir, "engine.sock") }).loadImage(
      join(dir, "a.ociapp"),
      image.manifestDigest,
      {
        maxUnpackedBytes: 1 << 30,
      },
    );
  const hex = () => image.manifestDigest.slice("sha256:".length);

  it("names the image only after the engine's success and the identity check: record, then reference, then the loading name goes", async () => {
    scenario = { answer: (name) => `{"stream":"Loaded image: ${name}\\n"}\n`, id: (manifest) => manifest };
    await load();
    expect(log.map((line) => line.replace(/loading:\d+-[a-f0-9]+/, "loading:<loading>"))).toEqual([
      "load ociapp.invalid/loading:<loading>",
      "inspect ociapp.invalid/loading:<loading>",
      `tag ociapp.invalid/used:sha256-${hex()}-<ms>`,
      "inspect ociapp.invalid/loading:<loading>",
      `tag ociapp.invalid/artifact:sha256-${hex()}`,
      "delete ociapp.invalid/loading:<loading>",
    ]);
    const files = await untar(body);
    expect(files.has("manifest.json")).toBe(false);
  });

  it("reports progress and loses no byte of the artifact when asking its size is slow", async () => {
    scenario = { answer: (name) => `{"stream":"Loaded image: ${name}\\n"}\n`, id: (manifest) => manifest };
    // The file's chunks flow once a data listener is attached: an await between that and the pipe
    // into the rewrite lost them (the engine got a tar without its first entries, or nothing).
    slowStat.ms = 200;
    const progress: [number, number][] = [];
    try {
      await new DockerEngine({ socketPath: join(dir, "engine.sock") }).loadImage(
        join(dir, "a.ociapp"),
        image.manifestDigest,
        { maxUnpackedBytes: 1 << 30, onProgress: (sent, total) => progress.push([sent, total]) },
      );
    } finally {
      slowStat.ms = 0;
    }
    expect(log).toContain(`tag ociapp.invalid/artifact:sha256-${hex()}`);
    expect(progress.at(-1)).toEqual([image.tarball.length, image.tarball.length]);
  });

  it("on the classic store appends a docker-archive manifest.json and checks the config digest", async () => {
    scenario = {
      classic: true,
      answer: (name) => `{"stream":"Loaded image: ${name}\\n"}\n`,
      id: (_manifest, config) => config,
    };
    await load();
    const manifest = JSON.parse(((await untar(body)).get("manifest.json") as Buffer).toString());
    expect(manifest[0].RepoTags[0]).toMatch(/^ociapp\.invalid\/loading:/);
    expect(log).toContain(`tag ociapp.invalid/artifact:sha256-${hex()}`);
  });

  it("removes the loading name and names nothing when the engine reports an error", async () => {
    scenario = {
      answer: () => '{"errorDetail":{"message":"failed to unpack loaded image"},"error":"failed"}\n',
      id: (manifest) => manifest,
    };
    const error = await load().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ArtifactError);
    expect((error as Error).message).toContain("failed to unpack loaded image");
    expect(log.filter((line) => line.startsWith("tag"))).toEqual([]);
    expect(log.at(-1)).toBe("delete ociapp.invalid/loading:<loading>");
  });

  it("removes the loading name and names nothing when the loaded image is not the artifact's", async () => {
    scenario = {
      answer: (name) => `{"stream":"Loaded image: ${name}"}`,
      id: () => `sha256:${"0".repeat(64)}`,
    };
    const error = await load().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ArtifactError);
    expect((error as Error).message).toContain("not");
    expect(log.filter((line) => line.startsWith("tag"))).toEqual([]);
    expect(log.at(-1)).toBe("delete ociapp.invalid/loading:<loading>");
  });

  it("treats an answer without a loaded image as a failure", async () => {
    scenario = { answer: () => "", id: (manifest) => manifest };
    const error = await load().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ArtifactError);
    expect(log.filter((line) => line.startsWith("tag"))).toEqual([]);
  });
});
