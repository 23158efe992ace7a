import { execFile } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DockerEngine,
  EngineUnavailableError,
  LABELS,
  OciappRuntimeError,
  Runtime,
  WorkerExitedError,
} from "../src/index.js";
import { daemonAnswers, startDaemon, stopDaemon } from "./support/dockerd.js";
import { type FixtureProject, fixtureProject } from "./support/fixture-build.js";

// The Docker daemon restarted under a Runtime that holds warm containers. dockerd runs without
// live-restore, so stopping it stops every container: the calls in flight on them must settle
// promptly with typed errors, calls while it is down must fail fast, and once it answers again the
// runtime must serve from new containers (and see their exits and OOM kills) and leak nothing.
// This file runs alone, after every other test project (vitest project "engine-disruptive").

const execFileAsync = promisify(execFile);

interface Reply {
  value: unknown;
  host: string;
}

interface Outcome {
  ms: number;
  value?: unknown;
  error?: unknown;
}

/** Records when a call settled, measured from `since()` at settle time. */
function track(promise: Promise<unknown>, since: () => number): Promise<Outcome> {
  return promise.then(
    (value) => ({ ms: performance.now() - since(), value }),
    (error: unknown) => ({ ms: performance.now() - since(), error }),
  );
}

async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Codes a call cut off by the daemon's stop may end with; each is a typed runtime error. */
const CUT_OFF_CODES = ["OCIAPP_WORKER_EXITED", "OCIAPP_PROTOCOL", "OCIAPP_ENGINE_UNAVAILABLE"];

describe("Runtime across a dockerd restart", () => {
  const engine = new DockerEngine();
  let fixture: FixtureProject | undefined;
  let artifact: { path: string; digest: string };
  let socketDir: string | undefined;
  const runtimes: Runtime[] = [];

  beforeAll(async () => {
    fixture = await fixtureProject();
    artifact = await fixture.build();
    socketDir = await mkdtemp(join(tmpdir(), "ort-restart-"));
  });

  afterAll(async () => {
    // Whatever happened above, the engine is left running: later CI steps (pnpm demo) need it.
    if (!(await daemonAnswers())) await startDaemon();
    await Promise.all(runtimes.map((runtime) => runtime.close()));
    if (artifact)
      await execFileAsync("docker", ["image", "rm", "-f", artifact.digest]).catch(() => undefined);
    if (socketDir) await rm(socketDir, { recursive: true, force: true });
    await fixture?.remove();
  });

  it("fails the affected calls with typed errors and serves later calls from new containers", async () => {
    const testStarted = performance.now();
    const rt = new Runtime({
      socketDir,
      minInstances: 2,
      maxInstances: 2,
      startupTimeout: 5_000,
      // The app's grace on SIGTERM follows shutdownTimeout: the daemon's stop of each container waits for it.
      shutdownTimeout: 3_000,
      // Long enough that a call which hangs shows up as a hang, not as a RequestTimeoutError.
      requestTimeout: 120_000,
      // Small enough that an OOM kill after the restart is quick to provoke.
      container: { memory: 128 * 1024 * 1024 },
    });
    // A second runtime whose one warm container is idle when the daemon stops.
    const idle = new Runtime({ socketDir, startupTimeout: 5_000, shutdownTimeout: 3_000 });
    runtimes.push(rt, idle);
    const labels = { [LABELS.managed]: "true", [LABELS.runtime]: rt.id };
    const idleLabels = { [LABELS.managed]: "true", [LABELS.runtime]: idle.id };
    const containerIds = async () => new Set((await engine.listContainers(labels)).map((c) => c.id));

    await rt.warm(artifact.path);
    const oldIds = await containerIds();
    expect(oldIds.size).toBe(2);
    const oldHosts = new Set([...oldIds].map((id) => id.slice(0, 12)));
    const idleBefore = await idle.execute<Reply>(artifact.path, { op: "echo", value: "idle" });
    const [idleOldId] = (await engine.listContainers(idleLabels)).map((c) => c.id);
    const warmReplies = await Promise.all(
      [1, 2, 3, 4].map((i) => rt.execute<Reply>(artifact.path, { op: "echo", value: i })),
    );
    for (const reply of warmReplies) expect(oldHosts.has(reply.host)).toBe(true);

    // Four calls that would run for ten minutes, two on each warm container.
    let stopSent = Number.NaN;
    const sinceStop = () => stopSent;
    const inFlight = [0, 1, 2, 3].map((i) =>
      track(rt.execute(artifact.path, { op: "sleep", ms: 600_000, value: i }), sinceStop),
    );
    await eventually(() => rt.stats().artifacts[0]?.inFlight === 4, 10_000);

    let stopMs: number;
    let startMs: number;
    let downCall: Outcome;
    try {
      stopSent = performance.now();
      const stopping = stopDaemon();
      // Calls made while the daemon stops its containers: the apps are draining and refuse them, so
      // the runtime sends them on to new containers, which the stopping daemon cannot provide.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const duringStop = [0, 1].map((i) =>
        track(rt.execute(artifact.path, { op: "echo", value: `during-${i}` }), sinceStop),
      );
      ({ stopMs } = await stopping);
      // Without live-restore the daemon stopped the containers before it exited, so the calls on
      // them have settled (or settle now, as their connections' ends are processed).
      const cutOff = await Promise.all(inFlight);
      for (const outcome of cutOff) {
        expect(outcome.error, "a call cut off by the daemon's stop").toBeInstanceOf(OciappRuntimeError);
        // The app was told to shut down and cancelled what it was running, though this runtime
        // never asked: to the caller its container went away (never RemoteExecutionError Cancelled).
        expect(outcome.error).toBeInstanceOf(WorkerExitedError);
        // Bound: the app's grace (2.4 s) plus the daemon's own stop, with ample slack.
        expect(outcome.ms).toBeLessThan(30_000);
      }
      const refused = await Promise.all(duringStop);
      for (const outcome of refused) {
        expect(outcome.error, "a call made while the daemon stopped").toBeInstanceOf(OciappRuntimeError);
        expect(CUT_OFF_CODES).toContain((outcome.error as OciappRuntimeError).code);
        expect(outcome.ms).toBeLessThan(30_000);
      }
      await eventually(() => rt.stats().artifacts[0]?.instances.ready === 0, 10_000);

      // While the daemon is down a call cannot get a container: it fails fast, typed.
      const downStarted = performance.now();
      downCall = await track(rt.execute(artifact.path, { op: "echo", value: "down" }), () => downStarted);
      expect(downCall.error).toBeInstanceOf(EngineUnavailableError);
      expect((downCall.error as EngineUnavailableError).code).toBe("OCIAPP_ENGINE_UNAVAILABLE");
      expect(downCall.ms).toBeLessThan(10_000);
      console.info(
        `[engine-restart] dockerd stopped ${Math.round(stopMs)} ms after SIGTERM; calls in flight settled after ${cutOff
          .map((outcome) => `${Math.round(outcome.ms)} ms (${(outcome.error as OciappRuntimeError).code})`)
          .join(", ")}; calls made 0.5 s into the stop settled after ${refused
          .map((outcome) => `${Math.round(outcome.ms)} ms (${(outcome.error as OciappRuntimeError).code})`)
          .join(", ")}; a call while down failed in ${downCall.ms.toFixed(1)} ms`,
      );
    } finally {
      ({ startMs } = await startDaemon());
    }

    // Calls after the restart succeed, on new containers only.
    const afterStarted = performance.now();
    const after = await Promise.all(
      Array.from({ length: 8 }, (_, i) => rt.execute<Reply>(artifact.path, { op: "echo", value: i })),
    );
    const firstAfterMs = performance.now() - afterStarted;
    expect(after.map((reply) => reply.value)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    for (const reply of after) expect(oldHosts.has(reply.host)).toBe(false);
    const idleAfter = await idle.execute<Reply>(artifact.path, { op: "echo", value: "idle again" });
    expect(idleAfter.value).toBe("idle again");
    expect(idleAfter.host).not.toBe(idleBefore.host);
    expect(idle.stats().artifacts[0]?.coldStarts).toBe(2);
    const newIds = await containerIds();
    expect(newIds.size).toBeGreaterThanOrEqual(1);
    expect(newIds.size).toBeLessThanOrEqual(2);
    for (const id of newIds) expect(oldIds.has(id)).toBe(false);
    expect(rt.stats().artifacts[0]?.coldStarts).toBeGreaterThan(2);

    // The pool tops itself up to minInstances again, with no call asking for it.
    await eventually(() => rt.stats().artifacts[0]?.instances.ready === 2, 30_000);

    // The engine watches work on the new daemon: an OOM kill is reported as one, and the call after it works.
    const oom = await track(rt.execute(artifact.path, { op: "alloc", mib: 400 }), () => 0);
    expect(oom.error).toBeInstanceOf(WorkerExitedError);
    expect((oom.error as WorkerExitedError).oomKilled).toBe(true);
    expect((oom.error as WorkerExitedError).exitCode).toBe(137);
    expect((await rt.execute<Reply>(artifact.path, { op: "echo", value: "still" })).value).toBe("still");

    await Promise.all([rt.close(), idle.close()]);
    expect(await engine.listContainers(idleLabels)).toEqual([]);
    expect(await engine.listContainers(labels)).toEqual([]);
    expect(await readdir(socketDir as string)).toEqual([]);
    // The old containers are gone from the engine too, not just unlabelled.
    const all = new Set((await engine.docker.listContainers({ all: true })).map((c) => c.Id));
    for (const id of [...oldIds, idleOldId]) expect(all.has(id as string)).toBe(false);
    console.info(
      `[engine-restart] dockerd answered again ${Math.round(startMs)} ms after start; 8 calls after it in ${Math.round(firstAfterMs)} ms on new containers; whole test ${Math.round(performance.now() - testStarted)} ms`,
    );
  });
});
