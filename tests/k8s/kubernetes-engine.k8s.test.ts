import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  KubernetesEngine,
  type KubernetesEngineOptions,
} from "../../packages/ociapp-runtime/src/engines/kubernetes/index.js";
import {
  ArtifactError,
  EngineUnavailableError,
  LABELS,
  Runtime,
  type RuntimeOptions,
  WorkerExitedError,
} from "../../packages/ociapp-runtime/src/index.js";
import {
  type FixtureProject,
  fixtureProject,
} from "../../packages/ociapp-runtime/tests/support/fixture-build.js";
import { prepareNamespace } from "../../packages/ociapp-runtime/tests/support/kubernetes-tools.js";
import { rejection } from "../../packages/ociapp-runtime/tests/support/outcomes.js";
import {
  clusterEnv,
  kubernetesTestOptions,
} from "../../packages/ociapp-runtime/tests/support/test-engine.js";
import { kubectl, kubectlJson } from "./kubectl.js";

// The KubernetesEngine's own promises on the real cluster, beside the runtime's engine tests
// (scripts/engine-matrix.sh kubernetes): the typed errors (an API server that is not there or does
// not answer, an image the node cannot pull, a RuntimeClass the cluster lacks) and the owner
// reference that garbage-collects an agent's pods with it.

const NS = "ociapp-engine-k8s";

function options(extra: Partial<KubernetesEngineOptions> = {}): KubernetesEngineOptions {
  return kubernetesTestOptions(NS, extra);
}

/** A kubeconfig naming the cluster's CA and admin credentials but another server. */
async function kubeconfigFor(server: string, dir: string): Promise<string> {
  const admin = await readFile(inject("kubeconfig"), "utf8");
  const path = join(dir, `kubeconfig-${randomBytes(3).toString("hex")}`);
  await writeFile(path, admin.replace(/server: \S+/, `server: ${server}`), { mode: 0o600 });
  return path;
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve((server.address() as { port: number }).port)),
  );
}

describe("KubernetesEngine on the cluster", () => {
  let work: string;
  let fixture: FixtureProject;
  let artifact: { path: string; digest: string };
  const runtimes: Runtime[] = [];
  const runtime = (engine: KubernetesEngine, extra: RuntimeOptions = {}) => {
    const made = new Runtime({
      engine,
      socketDir: join(work, `sockets-${runtimes.length}`),
      startupTimeout: 60_000,
      exitReportTimeout: 30_000,
      ...extra,
    });
    runtimes.push(made);
    return made;
  };

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "ociapp-k8s-engine-"));
    await prepareNamespace(NS);
    fixture = await fixtureProject();
    artifact = await fixture.build();
  });

  afterAll(async () => {
    await Promise.all(runtimes.map((rt) => rt.close()));
    await kubectl(["delete", "namespace", NS, "--ignore-not-found", "--wait=false"]).catch(() => undefined);
    await fixture?.remove();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("names an API server that is not there: EngineUnavailableError from ping and from a call", async () => {
    const probe = createServer();
    const port = await listen(probe);
    await new Promise((resolve) => probe.close(resolve));
    const engine = new KubernetesEngine(
      options({ kubeconfig: await kubeconfigFor(`https://127.0.0.1:${port}`, work) }),
    );
    const pinged = await rejection(engine.ping());
    expect(pinged).toBeInstanceOf(EngineUnavailableError);
    expect((pinged as Error).message).toBe(
      `cannot reach the Kubernetes API server at https://127.0.0.1:${port} (ECONNREFUSED) while trying to list pods`,
    );
    const error = await rejection(runtime(engine).execute(artifact.path, { op: "echo", value: "x" }));
    expect(error).toBeInstanceOf(EngineUnavailableError);
    expect((error as Error).message).toContain(`https://127.0.0.1:${port}`);
  });

  it("gives up on an API server that accepts connections and never answers: EngineUnavailableError within its request timeout", async () => {
    const sockets = new Set<import("node:net").Socket>();
    const silent = createServer((socket) => sockets.add(socket));
    const port = await listen(silent);
    try {
      const engine = new KubernetesEngine(
        options({
          kubeconfig: await kubeconfigFor(`https://127.0.0.1:${port}`, work),
          requestTimeout: 1_000,
        }),
      );
      // The server never answers: only the engine's own request timeout can end this.
      const error = await rejection(engine.ping());
      expect(error).toBeInstanceOf(EngineUnavailableError);
      expect((error as Error).message).toBe(
        `the Kubernetes API server at https://127.0.0.1:${port} did not list pods within 1000 ms`,
      );
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it("makes an image the node cannot pull an ArtifactError, and leaves no pod behind", async () => {
    // The artifact reaches the registry, but the node is told to pull it from a port nobody serves.
    const engine = new KubernetesEngine(
      options({ registry: { ...options().registry, nodeHost: "127.0.0.1:9" }, pullTimeout: 120_000 }),
    );
    const error = await rejection(runtime(engine).execute(artifact.path, { op: "echo", value: "x" }));
    expect(error).toBeInstanceOf(ArtifactError);
    expect((error as Error).message).toMatch(
      new RegExp(
        `^the node ${clusterEnv().node} cannot pull 127\\.0\\.0\\.1:9/ociapp/artifacts@${artifact.digest}: ErrImagePull`,
      ),
    );
    const pods = await kubectlJson<{ items: unknown[] }>(["-n", NS, "get", "pods"]);
    expect(pods.items).toEqual([]);
  });

  it("refuses a container.runtime the cluster has no RuntimeClass for (gVisor here: docs/kubernetes-cluster.md)", async () => {
    const engine = new KubernetesEngine(options());
    const error = await rejection(
      runtime(engine, { container: { runtime: "runsc" } }).execute(artifact.path, { op: "echo", value: "x" }),
    );
    expect(error).toBeInstanceOf(EngineUnavailableError);
    expect((error as Error).message).toContain('has no RuntimeClass "runsc"');
  });

  it("has its pods garbage-collected with their owner (ownerReferences): the call in flight ends with WorkerExitedError", async () => {
    const owner = JSON.parse(
      await kubectl([
        "-n",
        NS,
        "create",
        "configmap",
        `owner-${randomBytes(3).toString("hex")}`,
        "-o",
        "json",
      ]),
    ) as { metadata: { name: string; uid: string } };
    const engine = new KubernetesEngine(
      options({
        owner: { apiVersion: "v1", kind: "ConfigMap", name: owner.metadata.name, uid: owner.metadata.uid },
      }),
    );
    const rt = runtime(engine);
    await rt.warm(artifact.path);
    const [listed] = await engine.listContainers({ [LABELS.runtime]: rt.id });
    const pod = await kubectlJson<{ metadata: { ownerReferences: { uid: string }[] } }>([
      "-n",
      NS,
      "get",
      "pod",
      listed?.id as string,
    ]);
    expect(pod.metadata.ownerReferences.map((reference) => reference.uid)).toEqual([owner.metadata.uid]);
    const inFlight = rejection(rt.execute(artifact.path, { op: "sleep", ms: 120_000 }));
    // The owner goes once the container has the call, not merely once it was asked for.
    while (rt.stats().artifacts[0]?.containers[0]?.inFlight !== 1) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const deletedAt = Date.now();
    await kubectl(["-n", NS, "delete", "configmap", owner.metadata.name]);
    const error = await inFlight;
    expect(error).toBeInstanceOf(WorkerExitedError);
    console.info(
      `[k8s-engine] the owner's deletion ended the call in flight after ${Date.now() - deletedAt} ms`,
    );
    // The collector deletes it gracefully: it is listed as "removing" until its container is gone.
    const deadline = Date.now() + 60_000;
    while ((await engine.listContainers({ [LABELS.runtime]: rt.id })).length > 0) {
      expect(Date.now()).toBeLessThan(deadline);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  });
});
