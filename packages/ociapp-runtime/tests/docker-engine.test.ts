import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer as createHttpServer } from "node:http";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { OutputPipeline } from "../src/engines/output.js";
import { DockerEngine, EngineUnavailableError } from "../src/index.js";
import { createRuntime } from "../src/internal/create-runtime.js";
import { resolveOptions } from "../src/options.js";

// DockerEngine against fake engines on a Unix socket: one that accepts connections and never
// answers (a wedged daemon, or one whose socket is bound while it is still starting up), and one
// that answers a create only after the caller gave up.

const spec = (dir: string) => ({
  name: "ociapp-fake-1",
  image: `sha256:${"a".repeat(64)}`,
  env: {},
  labels: {},
  socketFolder: dir,
  container: resolveOptions({}).container,
  output: new OutputPipeline(),
});

describe("DockerEngine with an engine that never answers", () => {
  let dir: string;
  let server: Server;
  const sockets = new Set<Socket>();

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "ort-wedged-"));
    server = createServer((socket) => {
      sockets.add(socket);
      socket.on("error", () => undefined);
      socket.resume();
    });
    await new Promise<void>((resolve) => server.listen(join(dir, "engine.sock"), resolve));
  });

  afterEach(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  it("lets a start's signal end createContainer, even while the event stream is still opening", async () => {
    const engine = new DockerEngine({ socketPath: join(dir, "engine.sock") });
    const started = Date.now();
    const error = await engine.createContainer(spec(dir), AbortSignal.timeout(200)).then(
      () => undefined,
      (reason: unknown) => reason,
    );
    expect(error).toBeInstanceOf(EngineUnavailableError);
    expect((error as EngineUnavailableError).message).toContain("open its event stream");
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it("lets a signal end ping, hasImage, loadImage, killContainer and removeContainer", async () => {
    const engine = new DockerEngine({ socketPath: join(dir, "engine.sock") });
    const artifact = join(dir, "artifact.ociapp");
    await writeFile(artifact, Buffer.alloc(64 * 1024));
    const operations: [string, (signal: AbortSignal) => Promise<unknown>][] = [
      ["ping", (signal) => engine.ping(signal)],
      ["hasImage", (signal) => engine.hasImage(`sha256:${"a".repeat(64)}`, signal)],
      [
        "loadImage",
        (signal) =>
          engine.loadImage(artifact, `sha256:${"a".repeat(64)}`, { signal, maxUnpackedBytes: 1 << 30 }),
      ],
      ["killContainer", (signal) => engine.killContainer("some-id", "SIGTERM", signal)],
      ["removeContainer", (signal) => engine.removeContainer("some-id", signal)],
    ];
    for (const [name, run] of operations) {
      const started = Date.now();
      const error = await run(AbortSignal.timeout(200)).then(
        () => undefined,
        (reason: unknown) => reason,
      );
      expect(error, name).toBeInstanceOf(EngineUnavailableError);
      expect(Date.now() - started, name).toBeLessThan(2_000);
    }
  });

  it("bounds a Runtime's first call by startupTimeout, and close() ends", async () => {
    const runtime = createRuntime(
      {
        engine: new DockerEngine({ socketPath: join(dir, "engine.sock") }),
        socketDir: dir,
        startupTimeout: 300,
      },
      { readIndex: async () => ({ digest: `sha256:${"a".repeat(64)}` }) },
    );
    await writeFile(join(dir, "x.ociapp"), "stands for an artifact");
    const started = Date.now();
    const error = await runtime.execute(join(dir, "x.ociapp"), {}).then(
      () => undefined,
      (reason: unknown) => reason,
    );
    expect(error).toBeInstanceOf(EngineUnavailableError);
    expect((error as Error).message).toContain("within 300 ms");
    expect(Date.now() - started).toBeLessThan(3_000);
    await runtime.close();
  });
});

describe("DockerEngine when a create completes after the caller gave up", () => {
  it("rejects at once and removes the container the engine created late", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ort-late-"));
    const removed: string[] = [];
    const server = createHttpServer((request, response) => {
      const url = request.url ?? "";
      if (url.startsWith("/events")) {
        response.writeHead(200, { "content-type": "application/json" });
        response.flushHeaders();
      } else if (url.startsWith("/images/")) {
        response.writeHead(200, { "content-type": "application/json" });
        response.end(JSON.stringify({ Id: "sha256:image", Config: {} }));
      } else if (url.startsWith("/containers/create?")) {
        request.resume();
        setTimeout(() => {
          response.writeHead(201, { "content-type": "application/json" });
          response.end(JSON.stringify({ Id: "created-late", Warnings: [] }));
        }, 3_000);
      } else if (request.method === "DELETE" && url.startsWith("/containers/created-late")) {
        removed.push(url);
        response.writeHead(204);
        response.end();
      } else {
        response.writeHead(404, { "content-type": "application/json" });
        response.end(JSON.stringify({ message: `no route ${request.method} ${url}` }));
      }
    });
    await new Promise<void>((resolve) => server.listen(join(dir, "engine.sock"), resolve));
    try {
      const engine = new DockerEngine({ socketPath: join(dir, "engine.sock") });
      const started = Date.now();
      const error = await engine.createContainer(spec(dir), AbortSignal.timeout(100)).then(
        () => undefined,
        (reason: unknown) => reason,
      );
      expect(error).toBeInstanceOf(EngineUnavailableError);
      // The caller's 100 ms signal ends the wait; the engine answers the create only at 3 s.
      expect(Date.now() - started).toBeLessThan(2_500);
      const deadline = Date.now() + 20_000;
      while (removed.length === 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(removed).toHaveLength(1);
      expect(removed[0]).toContain("force=true");
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await rm(dir, { recursive: true, force: true });
    }
  });
});
