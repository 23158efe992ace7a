import { describe, expect, it } from "vitest";
import { OptionsError, Runtime, type RuntimeOptions } from "../src/index.js";
import { resolveOptions } from "../src/options.js";

describe("Runtime options", () => {
  it("fills secure defaults", () => {
    const options = resolveOptions({});
    expect(options).toMatchObject({
      startupTimeout: 10_000,
      requestTimeout: 30_000,
      shutdownTimeout: 10_000,
      idleTimeout: 900_000,
      reaperInterval: 1_000,
      maxInstances: 1,
      maxConcurrency: 64,
      minInstances: 0,
      maxQueue: 1_000,
      maxFrameBytes: 16 * 1024 * 1024,
      env: {},
      orphanTimeout: 60_000,
      container: {
        user: "10001:10001",
        uid: 10001,
        gid: 10001,
        networkMode: "none",
        readonlyRootfs: true,
        capDrop: ["ALL"],
        noNewPrivileges: true,
        init: true,
        memory: 512 * 1024 * 1024,
        nanoCpus: 1_000_000_000,
        pidsLimit: 256,
        logMaxSize: "1m",
        allowRoot: false,
        runtime: "runc",
      },
      maxDepth: 64,
      maxValues: 100_000,
      maxBufferedBytes: 64 * 1024 * 1024,
      exitReportTimeout: 5_000,
    });
    expect(options.container.tmpfs["/tmp"]).toContain("size=");
  });

  const cases: [RuntimeOptions, string][] = [
    [{ maxInstances: 0 }, "Runtime option maxInstances must be an integer between 1 and 1024 (got 0)"],
    [{ startupTimeout: -5 }, "Runtime option startupTimeout must be an integer >= 1 (got -5)"],
    [{ requestTimeout: 1.5 }, "Runtime option requestTimeout must be an integer >= 1 (got 1.5)"],
    [{ maxQueue: "10" as unknown as number }, 'Runtime option maxQueue must be an integer >= 0 (got "10")'],
    [
      { minInstances: 3, maxInstances: 2 },
      "Runtime option minInstances must not exceed maxInstances (got minInstances 3, maxInstances 2)",
    ],
    [{ env: { A: 1 as unknown as string } }, "Runtime option env.A must be a string (got 1)"],
    [
      { env: { OCIAPP_MAX_CONCURRENCY: "9" } },
      "Runtime option env.OCIAPP_MAX_CONCURRENCY is set by the runtime itself and cannot be overridden",
    ],
    [{ socketDir: `/${"x".repeat(100)}` }, "Runtime option socketDir must be at most 64 bytes long"],
    [{ container: { user: "root" } }, 'Runtime option container.user must be numeric "uid:gid" (got "root")'],
    [
      { container: { user: "0:0" } },
      'Runtime option container.user must not be root unless container.allowRoot is true (got "0:0")',
    ],
    [{ container: { memory: 1024 } }, "Runtime option container.memory must be 0 (no limit) or at least"],
    [
      { container: { logMaxSize: "lots" } },
      'Runtime option container.logMaxSize must be a size such as "512k"',
    ],
    [{ container: { pidsLimit: -1 } }, "Runtime option container.pidsLimit must be an integer >= 0 (got -1)"],
    [{ idleTimout: 5 } as RuntimeOptions, "Runtime option idleTimout is not a known option"],
    [
      { logs: "stderr" as unknown as RuntimeOptions["logs"] },
      "Runtime option logs must be a function taking one log record",
    ],
    [
      { container: { runtime: "run sc" } },
      'Runtime option container.runtime must be an OCI runtime name such as "runc" or "runsc" (got "run sc")',
    ],
    [
      { container: { runtime: "runsc", networkMode: "bridge" } },
      'Runtime option container.networkMode must be "none" with container.runtime "runsc" (got "bridge")',
    ],
    [
      { maxFrameBytes: 32 * 1024 * 1024, maxBufferedBytes: 1024 * 1024 },
      "Runtime option maxBufferedBytes must be an integer >= 33554432 (got 1048576)",
    ],
    [{ maxValues: 10 }, "Runtime option maxValues must be an integer between 64 and"],
    [
      { artifacts: { "bad key!": {} } },
      'Runtime option artifacts has key "bad key!": keys are manifest digests',
    ],
    [
      { artifacts: { thumbs: {} } },
      "Runtime option artifacts.thumbs (an alias) must name exactly one of path or digest",
    ],
    [
      { artifacts: { [`sha256:${"a".repeat(64)}`]: { path: "x.ociapp" } } },
      "is keyed by its digest: it takes no path or digest",
    ],
    [
      { artifacts: { thumbs: { path: "x.ociapp", maxInstances: 0 } } },
      "Runtime option artifacts.thumbs.maxInstances must be an integer between 1 and 1024 (got 0)",
    ],
    [
      { artifacts: { thumbs: { path: "x.ociapp", env: { OCIAPP_CONNECT: "x" } } } },
      "Runtime option artifacts.thumbs.env.OCIAPP_CONNECT is set by the runtime itself",
    ],
    [
      { artifacts: { thumbs: { path: "x.ociapp", cpus: 2 } as never } },
      "Runtime option artifacts.thumbs.cpus is not a known setting",
    ],
  ];
  for (const [options, message] of cases) {
    it(`rejects ${JSON.stringify(options)}`, () => {
      expect(() => resolveOptions(options)).toThrow(OptionsError);
      expect(() => resolveOptions(options)).toThrow(message);
    });
  }

  it("validates at construction, with a stable code", () => {
    try {
      new Runtime({ maxConcurrency: 0 });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(OptionsError);
      expect((error as OptionsError).code).toBe("OCIAPP_INVALID_OPTION");
    }
  });

  it("validates per-call options", async () => {
    const runtime = new Runtime({ engine: new RefusingEngine() });
    await expect(runtime.execute("x.ociapp", {}, { timeout: 0 })).rejects.toThrow(
      "execute() option timeout must be an integer >= 1 (got 0)",
    );
    // A misspelled option is an OptionsError like a constructor option, not silently ignored.
    const misspelled = await runtime
      .execute("x.ociapp", {}, { timout: 5 } as unknown as { timeout: number })
      .catch((error: unknown) => error);
    expect(misspelled).toBeInstanceOf(OptionsError);
    expect((misspelled as Error).message).toBe(
      'execute() option "timout" is not a known option (known: signal, timeout)',
    );
    await runtime.close();
  });
});

import type { ContainerHandle, Engine, ListedContainer } from "../src/engines/engine.js";

class RefusingEngine implements Engine {
  async ping(): Promise<void> {}
  async hasImage(): Promise<boolean> {
    return false;
  }
  async loadImage(): Promise<void> {
    throw new Error("not used");
  }
  async createContainer(): Promise<ContainerHandle> {
    throw new Error("not used");
  }
  async startContainer(): Promise<void> {}
  async killContainer(): Promise<void> {}
  async removeContainer(): Promise<void> {}
  async checkRuntime(): Promise<void> {}
  async imageLabels(): Promise<Record<string, string>> {
    return {};
  }
  async listContainers(): Promise<ListedContainer[]> {
    return [];
  }
}
