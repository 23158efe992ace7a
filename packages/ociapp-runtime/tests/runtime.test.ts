import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  ArtifactError,
  DockerEngine,
  EngineUnavailableError,
  InstanceStartupError,
  InvalidRequestError,
  type OciappRuntimeError,
  ProtocolError,
  QueueFullError,
  RemoteExecutionError,
  RequestTimeoutError,
  Runtime,
  RuntimeClosedError,
  type RuntimeOptions,
  WorkerExitedError,
} from "../src/index.js";
import { createRuntime } from "../src/internal/create-runtime.js";
import type { LogRecord } from "../src/observability/logs.js";
import { type Reply, rejection } from "./support/outcomes.js";
import { ProcessEngine } from "./support/process-engine.js";

// The pool, instance and connection logic against real `ociapp serve` processes (the process
// engine): fast, and without Docker. The *.engine.test.ts files run the same behaviours in containers.

const DIGEST = `sha256:${"a".repeat(64)}`;
const OTHER_DIGEST = `sha256:${"b".repeat(64)}`;
const HOSTILE = fileURLToPath(new URL("./support/hostile-server.mjs", import.meta.url));

/** Blocks this process's event loop for `ms` (a busy host). */
function blockEventLoop(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // busy
  }
}

async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("Runtime over the process engine", () => {
  let socketDir: string;
  let artifactDir: string;
  let artifact: string;
  let engine: ProcessEngine;
  const runtimes: Runtime[] = [];

  beforeEach(async () => {
    socketDir = await mkdtemp(join(tmpdir(), "rt-unit-"));
    artifactDir = await mkdtemp(join(tmpdir(), "rt-artifacts-"));
    artifact = join(artifactDir, "behaviours.ociapp");
    await writeFile(artifact, "stands for an artifact: the test's readIndex names its digest");
    engine = new ProcessEngine();
    engine.artifacts.set(artifact, DIGEST);
  });

  afterEach(async () => {
    await Promise.all(runtimes.splice(0).map((runtime) => runtime.close()));
    expect([...engine.containers.values()].map((container) => container.state)).toEqual([]);
    expect(await readdir(socketDir)).toEqual([]);
    await rm(socketDir, { recursive: true, force: true });
    await rm(artifactDir, { recursive: true, force: true });
  });

  function runtime(options: RuntimeOptions = {}): Runtime {
    const created = createRuntime(
      { engine, socketDir, startupTimeout: 15_000, ...options },
      { readIndex: async (path) => ({ digest: path.includes("other") ? OTHER_DIGEST : DIGEST }) },
    );
    runtimes.push(created);
    return created;
  }

  it("answers from a started container, loading the image once for concurrent first calls", async () => {
    const rt = runtime();
    const replies = await Promise.all([
      rt.execute<Reply>(artifact, { op: "echo", value: 1 }),
      rt.execute<Reply>(artifact, { op: "echo", value: 2 }),
    ]);
    expect(replies.map((reply) => reply.value)).toEqual([1, 2]);
    expect(engine.loads).toBe(1);
    const stats = rt.stats().artifacts[0];
    expect(stats).toMatchObject({ digest: DIGEST, coldStarts: 1, imageLoads: 1, inFlight: 0, queued: 0 });
    expect(stats?.instances.ready).toBe(1);
  });

  it("does not load an image the engine already holds", async () => {
    engine.images.add(DIGEST);
    const rt = runtime();
    await rt.execute(artifact, { op: "echo", value: "x" });
    expect(engine.loads).toBe(0);
    expect(rt.stats().artifacts[0]?.imageLoads).toBe(0);
  });

  it("spreads a burst over at most maxInstances containers and answers every call", async () => {
    const rt = runtime({ maxInstances: 2, maxConcurrency: 3 });
    const replies = await Promise.all(
      Array.from({ length: 30 }, (_, i) => rt.execute<Reply>(artifact, { op: "sleep", ms: 20, value: i })),
    );
    expect(replies.map((reply) => reply.value)).toEqual(Array.from({ length: 30 }, (_, i) => i));
    expect(new Set(replies.map((reply) => reply.pid)).size).toBeLessThanOrEqual(2);
    expect(rt.stats().artifacts[0]?.coldStarts).toBeLessThanOrEqual(2);
    expect(engine.created).toBeLessThanOrEqual(2);
  });

  it("rejects past maxQueue at once with QueueFullError", async () => {
    const rt = runtime({ maxQueue: 2, maxConcurrency: 1 });
    const first = rt.execute(artifact, { op: "sleep", ms: 100 });
    const second = rt.execute(artifact, { op: "sleep", ms: 100 });
    const error = await rejection(rt.execute(artifact, { op: "echo", value: 3 }));
    expect(error).toBeInstanceOf(QueueFullError);
    expect((error as QueueFullError).code).toBe("OCIAPP_QUEUE_FULL");
    await Promise.all([first, second]);
  });

  it("times out a queued call and takes it out of the queue", async () => {
    const rt = runtime({ maxConcurrency: 1 });
    const slow = rt.execute<Reply>(artifact, { op: "sleep", ms: 1_500, value: "slow" });
    await eventually(() => rt.stats().artifacts[0]?.inFlight === 1);
    const error = await rejection(rt.execute(artifact, { op: "echo", value: "late" }, { timeout: 100 }));
    expect(error).toBeInstanceOf(RequestTimeoutError);
    expect(rt.stats().artifacts[0]?.queued).toBe(0);
    expect((await slow).value).toBe("slow");
  });

  it("times out a running call at once, cancels it remotely, and keeps its slot until the final frame", async () => {
    const rt = runtime({ maxConcurrency: 1 });
    const first = await rt.execute<Reply>(artifact, { op: "echo", value: "warm" });
    const started = Date.now();
    const error = await rejection(rt.execute(artifact, { op: "sleep", ms: 60_000 }, { timeout: 300 }));
    expect(error).toBeInstanceOf(RequestTimeoutError);
    expect((error as RequestTimeoutError).code).toBe("OCIAPP_REQUEST_TIMEOUT");
    expect(Date.now() - started).toBeLessThan(3_000);
    // The container answers "Cancelled" for the cancelled id; the slot is then free again.
    await eventually(() => rt.stats().artifacts[0]?.inFlight === 0);
    const after = await rt.execute<Reply>(artifact, { op: "echo", value: "after" });
    expect(after.pid).toBe(first.pid);
  });

  it("drains a container whose app ignores a cancel: the stuck caller alone sees an error, its neighbours finish", async () => {
    const rt = runtime({ shutdownTimeout: 1_000, maxConcurrency: 4 });
    const first = await rt.execute<Reply>(artifact, { op: "echo", value: "warm" });
    // "busy" ignores its signal: without a bound its slot (and the container) stayed pinned.
    const ignored = rejection(rt.execute(artifact, { op: "busy", ms: 20_000 }, { timeout: 200 }));
    const neighbour = rt.execute<Reply>(artifact, { op: "sleep", ms: 4_000, value: "neighbour" });
    expect(await ignored).toBeInstanceOf(RequestTimeoutError);
    // One cancel grace (1 s) later the container takes no new calls: the next one starts another.
    await eventually(() => rt.stats().artifacts[0]?.instances.draining === 1);
    const after = await rt.execute<Reply>(artifact, { op: "echo", value: "after" });
    expect(after.pid).not.toBe(first.pid);
    // The neighbour finishes normally on the draining container, which is retired after it.
    const answered = await neighbour;
    expect(answered).toMatchObject({ value: "neighbour", pid: first.pid });
    await eventually(() => {
      const instances = rt.stats().artifacts[0]?.instances;
      return instances?.draining === 0 && instances.stopping === 0 && instances.ready === 1;
    }, 30_000);
    expect(rt.stats().artifacts[0]?.coldStarts).toBe(2);
  });

  it("resolves a call whose answer arrived while the event loop was busy past its deadline", async () => {
    const rt = runtime({ requestTimeout: 300 });
    await rt.warm(artifact);
    // A call that resolves the path afresh, so the calls below go out in this tick (no lookup).
    await rt.execute(artifact, { op: "echo", value: "warm" }, { timeout: 30_000 });
    // The answers come after 50 ms; the host's loop is blocked for 2 s from just after the requests are
    // written, so the 300 ms deadlines (a call's own timer, and the runtime's requestTimeout list) fire
    // late, with the whole answers sitting in the socket buffer.
    const answered = rt.execute<Reply>(artifact, { op: "sleep", ms: 50, value: "arrived" }, { timeout: 301 });
    const defaultTimeout = rt.execute<Reply>(artifact, { op: "sleep", ms: 50, value: "too" });
    setImmediate(() => blockEventLoop(2_000));
    expect((await answered).value).toBe("arrived");
    expect((await defaultTimeout).value).toBe("too");
    // A call that has no answer still times out.
    await rt.execute(artifact, { op: "echo", value: "again" }, { timeout: 30_000 });
    const late = rt.execute(artifact, { op: "sleep", ms: 60_000 }, { timeout: 300 });
    setImmediate(() => blockEventLoop(1_000));
    expect(await rejection(late)).toBeInstanceOf(RequestTimeoutError);
  });

  it("keeps a container whose app answers its cancels in time", async () => {
    const rt = runtime({ shutdownTimeout: 1_000 });
    const first = await rt.execute<Reply>(artifact, { op: "echo", value: "warm" });
    // "busy" for 300 ms ignores the cancel but answers within the grace.
    expect(await rejection(rt.execute(artifact, { op: "busy", ms: 300 }, { timeout: 50 }))).toBeInstanceOf(
      RequestTimeoutError,
    );
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const after = await rt.execute<Reply>(artifact, { op: "echo", value: "after" });
    expect(after.pid).toBe(first.pid);
  });

  it("rejects an aborted call with the signal's reason and keeps serving", async () => {
    const rt = runtime();
    await rt.execute(artifact, { op: "echo", value: "warm" });
    const controller = new AbortController();
    const pending = rt.execute(artifact, { op: "sleep", ms: 60_000 }, { signal: controller.signal });
    setTimeout(() => controller.abort(new Error("caller gave up")), 50);
    const error = await rejection(pending);
    expect((error as Error).message).toBe("caller gave up");
    await eventually(() => rt.stats().artifacts[0]?.inFlight === 0);
    expect((await rt.execute<Reply>(artifact, { op: "echo", value: "next" })).value).toBe("next");
    // An already aborted signal rejects before anything is sent.
    const aborted = AbortSignal.abort(new Error("already"));
    expect(
      await rejection(rt.execute(artifact, { op: "echo", value: 1 }, { signal: aborted })),
    ).toMatchObject({
      message: "already",
    });
  });

  it("turns the app's errors into RemoteExecutionError with the remote type", async () => {
    const rt = runtime();
    const thrown = await rejection(rt.execute(artifact, { op: "throw", message: "nope" }));
    expect(thrown).toBeInstanceOf(RemoteExecutionError);
    expect((thrown as RemoteExecutionError).remote).toMatchObject({ type: "FixtureError", message: "nope" });
    const invalid = await rejection(rt.execute(artifact, { op: "unknown-op" }));
    expect((invalid as RemoteExecutionError).remote.type).toBe("ValidationError");
    expect((invalid as RemoteExecutionError).remote.details).toBeDefined();
  });

  it("rejects requests it cannot send without touching the container", async () => {
    const rt = runtime({ maxFrameBytes: 1024 });
    expect(await rejection(rt.execute(artifact, undefined))).toBeInstanceOf(InvalidRequestError);
    expect(await rejection(rt.execute(artifact, { big: "x".repeat(2048) }))).toBeInstanceOf(
      InvalidRequestError,
    );
    expect(await rejection(rt.execute(artifact, { n: 1n }))).toBeInstanceOf(InvalidRequestError);
    expect(engine.created).toBe(0);
  });

  it("fails every call in flight with WorkerExitedError when the container dies, then replaces it", async () => {
    const rt = runtime();
    const first = await rt.execute<Reply>(artifact, { op: "echo", value: "before" });
    const sleeping = rejection(rt.execute(artifact, { op: "sleep", ms: 60_000 }));
    const exiting = rejection(rt.execute(artifact, { op: "exit", code: 3 }));
    const [a, b] = await Promise.all([sleeping, exiting]);
    for (const error of [a, b]) {
      expect(error).toBeInstanceOf(WorkerExitedError);
      expect((error as WorkerExitedError).exitCode).toBe(3);
      expect((error as WorkerExitedError).oomKilled).toBe(false);
    }
    const next = await rt.execute<Reply>(artifact, { op: "echo", value: "after" });
    expect(next.pid).not.toBe(first.pid);
    expect(rt.stats().artifacts[0]?.coldStarts).toBe(2);
  });

  it("sends calls a container refuses while it shuts down (stopped by someone else) to a new container", async () => {
    const rt = runtime({ maxInstances: 2, shutdownTimeout: 1_500 });
    const first = await rt.execute<Reply>(artifact, { op: "echo", value: "before" });
    // A call in flight keeps the connection open while the app drains (its grace is about 1.2 s).
    const sleeping = rejection(rt.execute(artifact, { op: "sleep", ms: 60_000 }));
    await eventually(() => rt.stats().artifacts[0]?.inFlight === 1);
    // Sent is not yet running: a request the app has not read when SIGTERM lands is refused too.
    await new Promise((resolve) => setTimeout(resolve, 300));
    // As `docker stop` or a stopping daemon would: the app drains and answers new requests "ShuttingDown".
    for (const container of engine.containers.values()) container.child?.kill("SIGTERM");
    await new Promise((resolve) => setTimeout(resolve, 300));
    const replies = await Promise.all(
      [1, 2, 3].map((value) => rt.execute<Reply>(artifact, { op: "echo", value })),
    );
    expect(replies.map((reply) => reply.value)).toEqual([1, 2, 3]);
    for (const reply of replies) expect(reply.pid).not.toBe(first.pid);
    // The app cancelled it on its way down, though this runtime never asked: to the caller the
    // container went away.
    const cut = await sleeping;
    expect(cut).toBeInstanceOf(WorkerExitedError);
    expect((cut as WorkerExitedError).message).toContain("stopped by something other than this runtime");
    expect(rt.stats().artifacts[0]?.coldStarts).toBe(2);
  });

  it("loads the image again after a start failed because the engine no longer holds it", async () => {
    const rt = runtime();
    const first = await rt.execute<Reply>(artifact, { op: "echo", value: "before" });
    expect(engine.loads).toBe(1);
    // The image is removed under the pool (a prune, say), then its container dies.
    engine.images.clear();
    for (const id of engine.containers.keys()) engine.kill(id);
    await eventually(() => rt.stats().artifacts[0]?.instances.ready === 0);
    expect(await rejection(rt.execute(artifact, { op: "echo", value: "lost" }))).toBeInstanceOf(
      InstanceStartupError,
    );
    const after = await rt.execute<Reply>(artifact, { op: "echo", value: "after" });
    expect(after.value).toBe("after");
    expect(after.pid).not.toBe(first.pid);
    expect(engine.loads).toBe(2);
    expect(rt.stats().artifacts[0]?.imageLoads).toBe(2);
  });

  it("fails calls with exit code null once exitReportTimeout passes when a container hangs up without exiting", async () => {
    engine.command = (_spec, socketPath) => [process.execPath, HOSTILE, "hang-up", socketPath];
    const rt = runtime({ exitReportTimeout: 300 });
    await rt.warm(artifact);
    const error = await rejection(rt.execute(artifact, { op: "echo", value: 1 }));
    expect(error).toBeInstanceOf(WorkerExitedError);
    expect((error as WorkerExitedError).exitCode).toBeNull();
    expect((error as WorkerExitedError).message).toContain("ended (exit code unknown)");
    // The container, still running, is killed and removed (afterEach checks nothing is left).
  });

  it("reports a killed container's exit code", async () => {
    const rt = runtime();
    await rt.execute(artifact, { op: "echo", value: "warm" });
    const inFlight = rejection(rt.execute(artifact, { op: "sleep", ms: 60_000 }));
    await eventually(() => rt.stats().artifacts[0]?.inFlight === 1);
    for (const id of engine.containers.keys()) engine.kill(id);
    const error = await inFlight;
    expect(error).toBeInstanceOf(WorkerExitedError);
    expect((error as WorkerExitedError).exitCode).toBe(137);
  });

  it("fails a start that never says hello within startupTimeout, with the container's output", async () => {
    engine.extraEnv = { OCIAPP_FIXTURE_HANG_ON_LOAD: "1" };
    const rt = runtime({ startupTimeout: 6_000 });
    const started = Date.now();
    const error = await rejection(rt.execute(artifact, { op: "echo", value: 1 }));
    expect(error).toBeInstanceOf(InstanceStartupError);
    expect((error as InstanceStartupError).message).toContain("did not send its hello frame within 6000 ms");
    expect((error as InstanceStartupError).logs).toContain("hanging on load");
    expect(Date.now() - started).toBeLessThan(20_000);
  });

  it("fails fast when the container exits before it is ready", async () => {
    engine.command = () => [process.execPath, "-e", "console.error('cannot load the app'); process.exit(7)"];
    const rt = runtime({ startupTimeout: 60_000 });
    const started = Date.now();
    const error = await rejection(rt.execute(artifact, { op: "echo", value: 1 }));
    expect(error).toBeInstanceOf(InstanceStartupError);
    expect((error as InstanceStartupError).message).toContain("exited with code 7 before it was ready");
    expect((error as InstanceStartupError).logs).toContain("cannot load the app");
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it("leaves no timer or connect attempt behind after a container exits before its hello", async () => {
    engine.command = () => [process.execPath, "-e", "setTimeout(() => process.exit(3), 200)"];
    const handles = () =>
      process.getActiveResourcesInfo().filter((kind) => kind === "Timeout" || kind === "PipeWrap").length;
    const before = handles();
    const rt = runtime({ startupTimeout: 60_000 });
    const error = await rejection(rt.execute(artifact, { op: "echo", value: 1 }));
    expect((error as InstanceStartupError).message).toContain("exited with code 3 before it was ready");
    await rt.close();
    // Before the fix the connect loop kept retrying every 10 ms: a timer or a connect attempt was
    // live at every sample.
    const samples: number[] = [];
    for (let i = 0; i < 10; i++) {
      await new Promise((resolve) => setImmediate(resolve));
      samples.push(handles());
      await new Promise((resolve) => setTimeout(resolve, 7).unref());
    }
    expect(Math.max(...samples)).toBeLessThanOrEqual(before);
  });

  for (const [mode, reason] of [
    ["unknown-id", "unknown-id"],
    ["huge-length", "frame-too-large"],
    ["garbage", "invalid-utf8"],
    ["stall", "frame-timeout"],
    ["too-deep", "too-deep"],
  ] as const) {
    it(`retires a container that breaks the protocol (${mode}) with ProtocolError`, async () => {
      engine.command = (_spec, socketPath) => [process.execPath, HOSTILE, mode, socketPath];
      const rt = runtime({ frameTimeout: 300 });
      const error = await rejection(rt.execute(artifact, { op: "echo", value: 1 }));
      expect(error).toBeInstanceOf(ProtocolError);
      expect((error as ProtocolError).reason).toBe(reason);
      await eventually(() => engine.containers.size === 0);
    });
  }

  it("fails a request larger than the container's hello allows, without breaking the connection", async () => {
    engine.command = (_spec, socketPath) => [process.execPath, HOSTILE, "quiet", socketPath];
    const rt = runtime();
    await rt.warm(artifact);
    const error = await rejection(rt.execute(artifact, { blob: "x".repeat(2 * 1024 * 1024) }));
    expect(error).toBeInstanceOf(InvalidRequestError);
    expect((error as Error).message).toContain("its hello allows 1048576 bytes");
    expect(rt.stats().artifacts[0]?.instances.ready).toBe(1);
  });

  it("rejects with ArtifactError for a file that is not an artifact (the real index reader)", async () => {
    const rt = new Runtime({ engine, socketDir });
    runtimes.push(rt);
    const error = await rejection(rt.execute(artifact, { op: "echo", value: 1 }));
    expect(error).toBeInstanceOf(ArtifactError);
    expect((error as ArtifactError).code).toBe("OCIAPP_ARTIFACT");
    expect((error as ArtifactError).path).toBe(artifact);
    const missing = await rejection(
      rt.execute(join(artifactDir, "missing.ociapp"), { op: "echo", value: 1 }),
    );
    expect(missing).toBeInstanceOf(ArtifactError);
    expect(engine.created).toBe(0);
  });

  it("rejects with EngineUnavailableError when the engine cannot be reached", async () => {
    const unreachable = new DockerEngine({ socketPath: join(socketDir, "no-engine.sock") });
    const rt = createRuntime(
      { engine: unreachable, socketDir },
      { readIndex: async () => ({ digest: DIGEST }) },
    );
    runtimes.push(rt);
    const error = await rejection(rt.execute(artifact, { op: "echo", value: 1 }));
    expect(error).toBeInstanceOf(EngineUnavailableError);
    expect((error as EngineUnavailableError).message).toContain(
      `cannot reach the Docker engine at unix://${join(socketDir, "no-engine.sock")} (ENOENT)`,
    );
    expect((error as EngineUnavailableError).code).toBe("OCIAPP_ENGINE_UNAVAILABLE");
  });

  for (const step of ["ping", "hasImage"] as const) {
    it(`bounds a ${step} the engine never answers by startupTimeout (EngineUnavailableError)`, async () => {
      Object.assign(engine, { [step]: () => new Promise<never>(() => undefined) });
      const rt = runtime({ startupTimeout: 300 });
      const started = Date.now();
      const error = await rejection(rt.execute(artifact, { op: "echo", value: 1 }));
      expect(error).toBeInstanceOf(EngineUnavailableError);
      expect((error as Error).message).toContain("within 300 ms");
      expect(Date.now() - started).toBeLessThan(3_000);
      expect(engine.created).toBe(0);
    });
  }

  it("close() ends on an engine that stops answering kill and remove", async () => {
    const rt = runtime({ shutdownTimeout: 1_000 });
    await rt.execute(artifact, { op: "echo", value: 1 });
    const { killContainer, removeContainer } = engine;
    engine.killContainer = () => new Promise(() => undefined);
    engine.removeContainer = () => new Promise(() => undefined);
    try {
      const started = Date.now();
      await rt.close();
      // SIGTERM (1 s bound), exit wait (1 s), SIGKILL (1 s), exit wait (1 s), remove (1 s).
      expect(Date.now() - started).toBeLessThan(50_000);
    } finally {
      engine.killContainer = killContainer;
      engine.removeContainer = removeContainer;
      await Promise.all([...engine.containers.keys()].map((id) => engine.removeContainer(id)));
    }
  });

  it("warm() with a signal rejects with its reason at once, and the start goes on", async () => {
    engine.extraEnv = { OCIAPP_FIXTURE_HANG_ON_LOAD: "1" };
    const rt = runtime({ startupTimeout: 60_000 });
    const reason = new Error("warm cancelled");
    const started = Date.now();
    const error = await rejection(rt.warm(artifact, { signal: AbortSignal.timeout(200) }));
    expect((error as Error).name).toBe("TimeoutError");
    expect(Date.now() - started).toBeLessThan(5_000);
    const controller = new AbortController();
    const second = rejection(rt.warm(artifact, { signal: controller.signal }));
    controller.abort(reason);
    expect(await second).toBe(reason);
    expect(rt.stats().artifacts[0]?.instances.starting).toBe(1);
  });

  it("fails every waiting call once all starts failed (engine down, minInstances 2), without starting more", async () => {
    // The engine went away after the image was checked: each create fails, one a little after the other.
    let creates = 0;
    engine.createContainer = async () => {
      creates++;
      await new Promise((resolve) => setTimeout(resolve, 10 * creates));
      throw new EngineUnavailableError("cannot reach the Docker engine (ENOENT) while trying to create");
    };
    const rt = runtime({ minInstances: 2, maxInstances: 2, requestTimeout: 5_000 });
    const started = Date.now();
    const errors = await Promise.all(
      [1, 2, 3].map((value) => rejection(rt.execute(artifact, { op: "echo", value }))),
    );
    for (const error of errors) expect(error).toBeInstanceOf(EngineUnavailableError);
    expect(Date.now() - started).toBeLessThan(4_000);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(creates).toBe(2);
    expect(rt.stats().artifacts[0]?.coldStarts).toBe(2);
  });

  it("fails the queue with the start's error when every start fails, and does not restart in a loop", async () => {
    engine.command = () => [process.execPath, "-e", "console.error('cannot load the app'); process.exit(7)"];
    const rt = runtime({ maxInstances: 2, maxConcurrency: 1, requestTimeout: 10_000 });
    const errors = await Promise.all(
      [1, 2, 3].map((value) => rejection(rt.execute(artifact, { op: "echo", value }))),
    );
    for (const error of errors) expect(error).toBeInstanceOf(InstanceStartupError);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(engine.created).toBe(2);
  });

  it("fails a start whose container sends a second hello", async () => {
    engine.command = (_spec, socketPath) => [process.execPath, HOSTILE, "second-hello", socketPath];
    const rt = runtime();
    const error = await rejection(rt.warm(artifact));
    expect(error).toBeInstanceOf(InstanceStartupError);
    expect((error as InstanceStartupError).message).toContain("broke the protocol while starting");
    expect((error as OciappRuntimeError).code).toBe("OCIAPP_INSTANCE_STARTUP");
  });

  it("fails calls with EngineUnavailableError naming the setting when the engine lacks the OCI runtime asked for", async () => {
    const rt = runtime({ container: { runtime: "runsc" } });
    const error = await rejection(rt.execute(artifact, { op: "echo", value: 1 }));
    expect(error).toBeInstanceOf(EngineUnavailableError);
    expect((error as Error).message).toBe('the process engine has no OCI runtime "runsc"');
    expect(engine.created).toBe(0);
    engine.runtimes.add("runsc");
    expect((await rt.execute<Reply>(artifact, { op: "echo", value: 2 })).value).toBe(2);
  });

  it("hands every line to the logs sink: console lines during execute tagged with the request id, child output untagged", async () => {
    const records: LogRecord[] = [];
    const rt = runtime({ logs: (record) => void records.push(record) });
    const reply = await rt.execute<Reply>(artifact, {
      op: "log",
      lines: ["first", "second"],
      child: "from sh",
    });
    expect(reply.value).toBe(2);
    await eventually(() => records.some((record) => record.text === "from sh"));
    const app = records.filter((record) => record.stream === "app");
    expect(app.map((record) => [record.text, record.level])).toEqual([
      ["first", "info"],
      ["second", "info"],
      ["error: 2 lines", "error"],
    ]);
    const requestIds = new Set(app.map((record) => record.requestId));
    expect(requestIds.size).toBe(1);
    expect([...requestIds][0]).toMatch(/^[0-9a-z]+$/);
    const child = records.find((record) => record.text === "from sh") as LogRecord;
    expect(child).toMatchObject({
      stream: "stdout",
      artifact: { digest: DIGEST, name: "behaviours-app", version: "0.1.0" },
    });
    expect(child.requestId).toBeUndefined();
    expect(child.container.id).toMatch(/^[0-9a-f]{64}$/);
    expect(rt.stats().logs).toMatchObject({ dropped: 0, sinkErrors: 0 });
    expect(rt.stats().logs.delivered).toBeGreaterThanOrEqual(4);
  });

  it("isolates a sink that throws or never settles, and bounds a flood of output (counted as dropped)", async () => {
    let calls = 0;
    const throwing = runtime({
      logs: () => {
        calls++;
        throw new Error("sink broken");
      },
    });
    expect((await throwing.execute<Reply>(artifact, { op: "log", lines: ["a", "b"] })).value).toBe(2);
    await eventually(() => throwing.stats().logs.sinkErrors >= 3);
    expect(calls).toBe(throwing.stats().logs.sinkErrors);
    // An async sink that never settles: 64 records in flight, the rest of 64 MiB of output dropped.
    const stuck = runtime({ logs: () => new Promise<void>(() => undefined) });
    const before = process.memoryUsage();
    expect((await stuck.execute<Reply>(artifact, { op: "flood", mib: 64 }, { timeout: 120_000 })).value).toBe(
      64,
    );
    await eventually(() => stuck.stats().logs.dropped > 60_000);
    const grown = process.memoryUsage().heapUsed - before.heapUsed;
    expect(grown).toBeLessThan(64 * 1024 * 1024);
    expect(stuck.stats().logs.delivered).toBeLessThanOrEqual(1_024 + 64);
    // The calls go on.
    expect((await stuck.execute<Reply>(artifact, { op: "echo", value: "still" })).value).toBe("still");
  });

  it("lists containers and latency percentiles, drains an artifact on demand, and recycles by calls and by age", async () => {
    const rt = runtime({ maxCallsPerContainer: 3, reaperInterval: 20 });
    const first = await rt.execute<Reply>(artifact, { op: "echo", value: 1 });
    await rt.execute(artifact, { op: "echo", value: 2 });
    let stats = rt.stats().artifacts[0];
    expect(stats?.containers).toEqual([
      {
        id: expect.stringMatching(/^[0-9a-f]{64}$/),
        state: "ready",
        inFlight: 0,
        uptimeMs: expect.any(Number),
        callsServed: 2,
      },
    ]);
    expect(stats?.latency.count).toBe(2);
    expect(stats?.latency.p50Ms).toBeGreaterThan(0);
    expect(stats?.latency.p99Ms).toBeGreaterThanOrEqual(stats?.latency.p50Ms ?? 0);
    // The third call is its last: it is recycled, and the fourth gets a new container.
    expect((await rt.execute<Reply>(artifact, { op: "echo", value: 3 })).pid).toBe(first.pid);
    const fourth = await rt.execute<Reply>(artifact, { op: "echo", value: 4 });
    expect(fourth.pid).not.toBe(first.pid);
    // drain(): the artifact's containers stop gracefully; the next call starts another.
    await rt.drain(artifact);
    stats = rt.stats().artifacts[0];
    expect(stats?.containers).toEqual([]);
    expect((await rt.execute<Reply>(artifact, { op: "echo", value: 5 })).pid).not.toBe(fourth.pid);
    await expect(rt.drain(DIGEST)).resolves.toBeUndefined();
    // By age: a container older than maxContainerAge is recycled by the reaper.
    const aged = runtime({ maxContainerAge: 300, reaperInterval: 20 });
    const young = await aged.execute<Reply>(artifact, { op: "echo", value: "young" });
    await eventually(() => aged.stats().artifacts[0]?.containers.length === 0);
    expect((await aged.execute<Reply>(artifact, { op: "echo", value: "again" })).pid).not.toBe(young.pid);
  });

  it("retires an idle container that stops answering pings", async () => {
    const rt = runtime({ pingInterval: 200, reaperInterval: 20 });
    const frozen = await rt.execute<Reply>(artifact, { op: "freeze" });
    expect(frozen.value).toBe("frozen");
    // Its event loop is wedged: the idle ping gets no pong, and the container is retired and killed.
    await eventually(() => rt.stats().artifacts[0]?.containers.length === 0, 20_000);
    expect((await rt.execute<Reply>(artifact, { op: "echo", value: "new" })).pid).not.toBe(frozen.pid);
  });

  it("applies settings per digest and per alias (a pool of its own), lowered by the app's declared defaults", async () => {
    const appDefaults = {
      "dev.ociapp.runtime.maxConcurrency": "2",
      "dev.ociapp.runtime.memory": String(256 * 1024 * 1024),
    };
    const rt = createRuntime(
      {
        engine,
        socketDir,
        startupTimeout: 15_000,
        maxConcurrency: 16,
        env: { WHO: "runtime" },
        artifacts: {
          [DIGEST]: { env: { WHO: "digest" }, maxInstances: 2 },
          light: { path: artifact, env: { WHO: "light" }, maxConcurrency: 1 },
          // The app's defaults cannot raise what the service allows: 8 > 2 is lowered to 2.
          heavy: { path: artifact, maxConcurrency: 8, memory: 1024 * 1024 * 1024 },
        },
      },
      { readIndex: async () => ({ digest: DIGEST, annotations: appDefaults }) },
    );
    runtimes.push(rt);
    expect((await rt.execute<Reply>(artifact, { op: "env", name: "WHO" })).value).toBe("digest");
    expect((await rt.execute<Reply>("light", { op: "env", name: "WHO" })).value).toBe("light");
    expect((await rt.execute<Reply>("heavy", { op: "env", name: "WHO" })).value).toBe("digest");
    const byAlias = Object.fromEntries(
      rt.stats().artifacts.map((entry) => [entry.alias ?? "(path)", entry.settings]),
    );
    expect(byAlias).toEqual({
      "(path)": {
        maxInstances: 2,
        maxConcurrency: 2,
        minInstances: 0,
        memory: 256 * 1024 * 1024,
        nanoCpus: 1e9,
      },
      light: {
        maxInstances: 2,
        maxConcurrency: 1,
        minInstances: 0,
        memory: 256 * 1024 * 1024,
        nanoCpus: 1e9,
      },
      heavy: {
        maxInstances: 2,
        maxConcurrency: 2,
        minInstances: 0,
        memory: 256 * 1024 * 1024,
        nanoCpus: 1e9,
      },
    });
    // The container of each pool got its pool's limits.
    const memories = [...engine.containers.values()].map((container) => container.spec.container.memory);
    expect(new Set(memories)).toEqual(new Set([256 * 1024 * 1024]));
    // drain(alias) drains that pool alone.
    await rt.drain("light");
    expect(rt.stats().artifacts.find((entry) => entry.alias === "light")?.containers).toEqual([]);
    expect(rt.stats().artifacts.find((entry) => entry.alias === undefined)?.containers).toHaveLength(1);
  });

  it("keeps containers that refuse every call and ignore SIGTERM to maxInstances + 1 at once", async () => {
    engine.command = (_spec, socketPath) => [process.execPath, HOSTILE, "refuse-all", socketPath];
    const rt = runtime({ maxInstances: 1, shutdownTimeout: 500, requestTimeout: 4_000 });
    const error = await rejection(rt.execute(artifact, { op: "echo", value: 1 }));
    expect(error).toBeInstanceOf(RequestTimeoutError);
    // Each container drains (it refused), ignores SIGTERM and is killed after shutdownTimeout; while
    // it is on its way out one replacement may start, never more.
    expect(rt.stats().artifacts[0]?.coldStarts).toBeGreaterThanOrEqual(2);
    expect(engine.mostAlive).toBeLessThanOrEqual(2);
  });

  it("fails a start whose container sends a frame before its hello (missing-hello)", async () => {
    engine.command = (_spec, socketPath) => [process.execPath, HOSTILE, "no-hello", socketPath];
    const rt = runtime();
    const error = await rejection(rt.warm(artifact));
    expect(error).toBeInstanceOf(InstanceStartupError);
    expect((error as InstanceStartupError).message).toContain("before the app's hello");
  });

  it("reaps idle containers down to minInstances, and keeps minInstances warm", async () => {
    const rt = runtime({ idleTimeout: 200, reaperInterval: 20 });
    await rt.execute(artifact, { op: "echo", value: 1 });
    expect(engine.containers.size).toBe(1);
    await eventually(() => engine.containers.size === 0);
    expect(rt.stats().artifacts.flatMap((a) => [a.instances.ready, a.instances.starting])).toEqual(
      rt.stats().artifacts.flatMap(() => [0, 0]),
    );

    const kept = runtime({ idleTimeout: 200, reaperInterval: 20, minInstances: 1, maxInstances: 2 });
    await kept.warm(artifact);
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(kept.stats().artifacts[0]?.instances.ready).toBe(1);
  });

  it("does not retry a failing start of minInstances in a tight loop", async () => {
    engine.command = () => [process.execPath, "-e", "process.exit(9)"];
    const rt = runtime({ minInstances: 1, reaperInterval: 20, startupTimeout: 1_000 });
    expect(await rejection(rt.warm(artifact))).toBeInstanceOf(InstanceStartupError);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(engine.created).toBe(1);
  });

  it("warm() starts minInstances ahead of traffic", async () => {
    const rt = runtime({ minInstances: 2, maxInstances: 3 });
    await rt.warm(artifact);
    expect(rt.stats().artifacts[0]?.instances.ready).toBe(2);
    await rt.execute(artifact, { op: "echo", value: 1 });
    expect(rt.stats().artifacts[0]?.coldStarts).toBe(2);
  });

  it("shares one pool between paths of one digest, and keeps pools apart by digest", async () => {
    const copy = join(artifactDir, "copy.ociapp");
    const other = join(artifactDir, "other.ociapp");
    await writeFile(copy, "same digest, another path");
    await writeFile(other, "another digest");
    engine.artifacts.set(other, OTHER_DIGEST);
    const rt = runtime();
    const a = await rt.execute<Reply>(artifact, { op: "echo", value: 1 });
    const b = await rt.execute<Reply>(copy, { op: "echo", value: 2 });
    const c = await rt.execute<Reply>(other, { op: "echo", value: 3 });
    expect(b.pid).toBe(a.pid);
    expect(c.pid).not.toBe(a.pid);
    expect(
      rt
        .stats()
        .artifacts.map((stats) => stats.digest)
        .sort(),
    ).toEqual([DIGEST, OTHER_DIGEST]);
  });

  it("close() lets calls in flight finish, rejects queued and new calls, and is idempotent", async () => {
    const rt = runtime({ maxConcurrency: 1 });
    await rt.execute(artifact, { op: "echo", value: "warm" });
    const inFlight = rt.execute<Reply>(artifact, { op: "sleep", ms: 1_000, value: "finished" });
    const queued = rejection(rt.execute(artifact, { op: "echo", value: "queued" }));
    await eventually(() => rt.stats().artifacts[0]?.inFlight === 1);
    const closing = rt.close();
    expect(await rejection(rt.execute(artifact, { op: "echo", value: "new" }))).toBeInstanceOf(
      RuntimeClosedError,
    );
    expect(await queued).toBeInstanceOf(RuntimeClosedError);
    expect((await inFlight).value).toBe("finished");
    await closing;
    await rt.close();
    await rt[Symbol.asyncDispose]();
    expect(engine.containers.size).toBe(0);
    expect(await rejection(rt.warm(artifact))).toBeInstanceOf(RuntimeClosedError);
  });

  it("close() with a call that outlives shutdownTimeout sends SIGKILL one kill margin after SIGTERM", async () => {
    const rt = runtime({ shutdownTimeout: 12_000 });
    await rt.warm(artifact);
    // "busy" ignores every signal: only SIGKILL ends it.
    const stuck = rejection(rt.execute(artifact, { op: "busy", ms: 120_000 }));
    await eventually(() => rt.stats().artifacts[0]?.inFlight === 1);
    const started = performance.now();
    await rt.close();
    // The drain waits the whole shutdownTimeout for the call (a lower bound holds on any machine).
    expect(performance.now() - started).toBeGreaterThanOrEqual(12_000);
    const term = engine.kills.find((kill) => kill.signal === "SIGTERM");
    const kill = engine.kills.find((kill) => kill.signal === "SIGKILL");
    // Then SIGKILL follows SIGTERM after the margin, min(1 s, shutdownTimeout / 5) = 1 s, not after
    // another shutdownTimeout (12 s): 10x slack on the margin.
    expect(term && kill).toBeTruthy();
    expect((kill?.at ?? 0) - (term?.at ?? 0)).toBeLessThan(10_000);
    const error = await stuck;
    expect(error).toBeInstanceOf(WorkerExitedError);
    expect((error as WorkerExitedError).exitCode).toBe(137);
  });

  it("close() right after a request was written still lets it finish", async () => {
    const rt = runtime();
    await rt.execute(artifact, { op: "echo", value: "warm" });
    // A second call refreshes the path's digest, so the next one is written synchronously.
    await rt.execute(artifact, { op: "echo", value: "fresh" });
    const inFlight = rt.execute<Reply>(artifact, { op: "sleep", ms: 200, value: "answered" });
    expect(rt.stats().artifacts[0]?.inFlight).toBe(1);
    await rt.close();
    expect((await inFlight).value).toBe("answered");
  });

  it("close() during a start removes the half-started container", async () => {
    const rt = runtime();
    const pending = rejection(rt.execute(artifact, { op: "echo", value: 1 }));
    await eventually(() => engine.created === 1);
    await rt.close();
    expect(await pending).toBeInstanceOf(RuntimeClosedError);
  });
});
