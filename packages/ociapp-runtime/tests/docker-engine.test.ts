import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DockerEngine, EngineUnavailableError } from "../src/index.js";
import { resolveOptions } from "../src/options.js";

// DockerEngine against an "engine" that accepts connections and never answers: a daemon that is
// wedged, or one whose socket is bound while it is still starting up.

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
    const error = await engine
      .createContainer(
        {
          name: "ociapp-wedged-1",
          image: `sha256:${"a".repeat(64)}`,
          env: {},
          labels: {},
          socketFolder: dir,
          container: resolveOptions({}).container,
        },
        AbortSignal.timeout(200),
      )
      .then(
        () => undefined,
        (reason: unknown) => reason,
      );
    expect(error).toBeInstanceOf(EngineUnavailableError);
    expect((error as EngineUnavailableError).message).toContain("open its event stream");
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});
