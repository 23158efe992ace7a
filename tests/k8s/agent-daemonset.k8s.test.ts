import { execFile, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { connect } from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { V1Pod } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { CallLostError, RemoteExecutor } from "../../packages/ociapp-runtime/src/index.js";
import { hashToken } from "../../packages/ociapp-runtime/src/remote/agent/index.js";
import { makePki, type TestPki } from "../../packages/ociapp-runtime/tests/remote/support/certs.js";
import {
  type FixtureProject,
  fixtureProject,
} from "../../packages/ociapp-runtime/tests/support/fixture-build.js";
import { killPodContainer } from "../../packages/ociapp-runtime/tests/support/kubernetes-tools.js";
import type { Reply } from "../../packages/ociapp-runtime/tests/support/outcomes.js";
import { clusterEnv } from "../../packages/ociapp-runtime/tests/support/test-engine.js";
import { kubectl, kubectlJson } from "./kubectl.js";

// Step 3 of issue 18: the agent on the cluster. deploy/kubernetes/*.yaml applied as they are (plus
// the Secrets a deployment makes: its TLS certificate, token hash, registry password), the agent's
// image built from this workspace and imported into the node (scripts/k8s.sh agent-image), found
// through its EndpointSlices, and driven by RemoteExecutor from this process: an artifact runs; the
// admission policy refuses, with the agent's own pod-bound token, a pod for another node; an agent
// SIGKILLed mid-call costs that call a CallLostError (never a hang, never a second run); an agent
// pod deleted takes its app pods with it (ownerReferences) and its DaemonSet replaces it.

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DEPLOY = join(ROOT, "deploy/kubernetes");
const NS = "ociapp";
const PORT = 18443;

interface EndpointSliceList {
  items: {
    endpoints?: { nodeName?: string; conditions?: { ready?: boolean }; targetRef?: { name: string } }[];
  }[];
}

async function eventually<T>(
  check: () => Promise<T | undefined>,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

async function agentPod(): Promise<V1Pod> {
  const pods = await kubectlJson<{ items: V1Pod[] }>([
    "-n",
    NS,
    "get",
    "pods",
    "-l",
    "app.kubernetes.io/name=ociapp-agent",
  ]);
  const live = pods.items.filter((pod) => !pod.metadata?.deletionTimestamp);
  if (live.length !== 1) throw new Error(`expected one agent pod, found ${live.length}`);
  return live[0] as V1Pod;
}

async function appPods(): Promise<V1Pod[]> {
  const pods = await kubectlJson<{ items: V1Pod[] }>(["-n", NS, "get", "pods", "-l", "dev.ociapp.pod=app"]);
  return pods.items;
}

/**
 * Discovery as a client does it: the ready endpoints of the agents' headless Service, by node. The
 * agents listen on the node's loopback here, which an EndpointSlice cannot hold, so each ready
 * endpoint's node becomes https://127.0.0.1:PORT (one node); on a real cluster, its address.
 */
async function discoverAgents(): Promise<string[]> {
  const slices = await kubectlJson<EndpointSliceList>([
    "-n",
    NS,
    "get",
    "endpointslices",
    "-l",
    "kubernetes.io/service-name=ociapp-agents",
  ]);
  const nodes = slices.items.flatMap((slice) =>
    (slice.endpoints ?? []).filter((e) => e.conditions?.ready && e.nodeName).map((e) => e.nodeName as string),
  );
  return [...new Set(nodes)].map(() => `https://127.0.0.1:${PORT}`);
}

/** What agentMetric() authenticates with: the CA of the agent's certificate and the test's token. */
const metricsAccess: { ca: Buffer; token: string } = {
  ca: Buffer.alloc(0),
  token: randomBytes(24).toString("base64url"),
};

describe("the agent as a DaemonSet", () => {
  let work: string;
  let pki: TestPki;
  let fixture: FixtureProject;
  let artifact: { path: string; digest: string };
  const token = metricsAccess.token;
  const clients: RemoteExecutor[] = [];
  const client = async () => {
    const made = new RemoteExecutor({
      agents: await discoverAgents(),
      token,
      ca: pki.ca,
      requestTimeout: 120_000,
    });
    clients.push(made);
    return made;
  };

  beforeAll(async () => {
    const started = performance.now();
    const image = spawnSync("bash", [join(ROOT, "scripts/k8s.sh"), "agent-image"], {
      stdio: "inherit",
      timeout: 900_000,
    });
    if (image.status !== 0)
      throw new Error(`scripts/k8s.sh agent-image failed (${image.status ?? image.signal})`);
    console.info(`[daemonset] agent image ready in ${Math.round(performance.now() - started)} ms`);
    work = await mkdtemp(join(tmpdir(), "ociapp-daemonset-"));
    pki = await makePki(work);
    metricsAccess.ca = pki.ca;
    fixture = await fixtureProject();
    artifact = await fixture.build();
    // A previous run that died left its namespace: start from nothing.
    await kubectl(["delete", "namespace", NS, "--ignore-not-found", "--wait=true", "--timeout=180s"], {
      timeout: 200_000,
    });
    await kubectl(["apply", "-f", join(DEPLOY, "namespace.yaml")]);
    await kubectl([
      "apply",
      "-f",
      join(DEPLOY, "rbac.yaml"),
      "-f",
      join(DEPLOY, "admission-policy.yaml"),
      "-f",
      join(DEPLOY, "service.yaml"),
    ]);
    const env = clusterEnv();
    const password = (await readFile(env.registryPasswordFile, "utf8")).trim();
    const registryHost = new URL(env.registryUrl).host;
    const config = [
      `listen: { host: 127.0.0.1, port: ${PORT} }`,
      "tls: { cert: /etc/ociapp/tls/tls.crt, key: /etc/ociapp/tls/tls.key }",
      "store: /var/lib/ociapp-agent/store",
      "tokens:",
      `  - { id: ci, sha256: ${hashToken(token)}, scopes: { digests: ["*"], upload: true, metrics: true } }`,
      "runtime: { socketDir: /run/ociapp-agent/sockets, startupTimeout: 60000, shutdownTimeout: 3000 }",
      "engine:",
      "  kind: kubernetes",
      `  registry: { url: "${env.registryUrl}", username: ${env.registryUsername}, passwordFile: /etc/ociapp/registry/password, pullSecret: ociapp-registry-pull }`,
      "",
    ].join("\n");
    const secret = (name: string, data: Record<string, string | Buffer>, type = "Opaque") => ({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name, namespace: NS },
      type,
      data: Object.fromEntries(
        Object.entries(data).map(([key, value]) => [key, Buffer.from(value).toString("base64")]),
      ),
    });
    const auth = Buffer.from(`${env.registryUsername}:${password}`).toString("base64");
    const secrets = [
      secret("ociapp-agent-config", { "agent.yaml": config }),
      secret(
        "ociapp-agent-tls",
        { "tls.crt": await readFile(pki.certPath), "tls.key": await readFile(pki.keyPath) },
        "kubernetes.io/tls",
      ),
      secret("ociapp-agent-registry", { password }),
      secret(
        "ociapp-registry-pull",
        { ".dockerconfigjson": JSON.stringify({ auths: { [registryHost]: { auth } } }) },
        "kubernetes.io/dockerconfigjson",
      ),
    ];
    await kubectl(["apply", "-f", "-"], {
      input: JSON.stringify({ apiVersion: "v1", kind: "List", items: secrets }),
    });
    const deployed = performance.now();
    await kubectl(["apply", "-f", join(DEPLOY, "daemonset.yaml")]);
    await kubectl(["-n", NS, "rollout", "status", "daemonset/ociapp-agent", "--timeout=180s"], {
      timeout: 200_000,
    });
    await eventually(
      async () => ((await discoverAgents()).length === 1 ? true : undefined),
      60_000,
      "a ready endpoint",
    );
    console.info(
      `[daemonset] agent ready and discovered ${Math.round(performance.now() - deployed)} ms after apply`,
    );
  });

  afterAll(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    // OCIAPP_K8S_KEEP_DEPLOYMENT=1 leaves it in place to look at (the next run starts over anyway).
    if (process.env.OCIAPP_K8S_KEEP_DEPLOYMENT === "1") return;
    // Cluster-scoped objects first; the namespace takes the rest (app pods via their owner).
    await kubectl([
      "delete",
      "-f",
      join(DEPLOY, "admission-policy.yaml"),
      "-f",
      join(DEPLOY, "rbac.yaml"),
      "--ignore-not-found",
      "--wait=false",
    ]).catch(() => undefined);
    await kubectl(["delete", "namespace", NS, "--ignore-not-found", "--wait=true", "--timeout=180s"], {
      timeout: 200_000,
    }).catch(() => undefined);
    await fixture?.remove();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("runs an artifact through the agent, found from its EndpointSlices, in a pod on its node owned by its pod", async () => {
    const executor = await client();
    const started = performance.now();
    const reply = await executor.execute<Reply>(artifact.path, {
      op: "echo",
      value: "through the DaemonSet",
    });
    console.info(
      `[daemonset] first call (upload, push, pull, pod start) ${Math.round(performance.now() - started)} ms`,
    );
    expect(reply.value).toBe("through the DaemonSet");
    const agent = await agentPod();
    const [pod] = await appPods();
    expect(pod?.spec?.nodeName).toBe(agent.spec?.nodeName);
    expect(pod?.metadata?.ownerReferences).toEqual([
      expect.objectContaining({
        apiVersion: "v1",
        kind: "Pod",
        name: agent.metadata?.name,
        uid: agent.metadata?.uid,
      }),
    ]);
    expect(pod?.spec?.volumes?.find((v) => v.hostPath)?.hostPath?.path).toMatch(
      /^\/run\/ociapp-agent\/sockets\//,
    );
    const warm = performance.now();
    for (let i = 0; i < 20; i++) await executor.execute(artifact.path, { op: "echo", value: String(i) });
    console.info(`[daemonset] 20 warm calls ${Math.round(performance.now() - warm)} ms`);
  });

  it("refuses, by its admission policy, a pod the agent's own token makes for another node", async () => {
    const agent = await agentPod();
    // The agent's own kind of token: bound to its pod, so it carries the pod's node.
    const bound = (
      await kubectl([
        "-n",
        NS,
        "create",
        "token",
        "ociapp-agent",
        "--bound-object-kind=Pod",
        `--bound-object-name=${agent.metadata?.name}`,
        `--bound-object-uid=${agent.metadata?.uid}`,
        "--duration=10m",
      ])
    ).trim();
    const unbound = (await kubectl(["-n", NS, "create", "token", "ociapp-agent", "--duration=10m"])).trim();
    const [template] = await appPods();
    const node = agent.spec?.nodeName as string;
    const attempt = async (as: string, change: (pod: V1Pod) => void) => {
      const pod = JSON.parse(JSON.stringify(template)) as V1Pod;
      pod.metadata = {
        name: `vap-test-${randomBytes(3).toString("hex")}`,
        namespace: NS,
        labels: pod.metadata?.labels ?? {},
      };
      delete pod.status;
      change(pod);
      return createAs(as, pod);
    };
    // Its own node: allowed (a server-side dry run: nothing is made).
    expect(await attempt(bound, () => undefined)).toEqual({ allowed: true, message: "" });
    const other = await attempt(bound, (pod) => {
      (pod.spec as { nodeName: string }).nodeName = "another-node";
    });
    expect(other.allowed).toBe(false);
    expect(other.message).toContain(`ValidatingAdmissionPolicy 'ociapp-agent-pods'`);
    expect(other.message).toContain(`may create pods only on its own node (${node}), not on another-node`);
    // A token without the node claim (not bound to a pod) places pods nowhere.
    const claimless = await attempt(unbound, () => undefined);
    expect(claimless.allowed).toBe(false);
    expect(claimless.message).toContain("its token names none");
    // Nor anything the engine never makes: a host path outside the socket folders, host networking.
    const hostPath = await attempt(bound, (pod) => {
      const volume = pod.spec?.volumes?.find((v) => v.hostPath);
      if (volume?.hostPath) volume.hostPath.path = "/etc";
    });
    expect(hostPath.message).toContain("may mount only its socket folders");
    const hostNetwork = await attempt(bound, (pod) => {
      (pod.spec as { hostNetwork: boolean }).hostNetwork = true;
    });
    expect(hostNetwork.message).toContain("not create pods in the host's namespaces");
  });

  it("loses only the call in flight when its agent is SIGKILLed: CallLostError, no second run, and the restarted agent serves", async () => {
    const executor = await client();
    await executor.execute(artifact.path, { op: "echo", value: "warm" });
    const before = await agentPod();
    const restarts = before.status?.containerStatuses?.[0]?.restartCount ?? 0;
    const marker = `mid-call-${randomBytes(3).toString("hex")}`;
    const call = executor.execute(artifact.path, { op: "sleep", ms: 60_000, value: marker }).then(
      () => new Error("the call was answered"),
      (error: unknown) => error,
    );
    // Killed only once the agent serves it (its in-flight gauge), not merely once it was sent.
    await eventually(
      async () => ((await agentMetric("ociapp_agent_calls_in_flight")) === 1 ? true : undefined),
      60_000,
      "the call in flight at the agent",
    );
    const killedAt = performance.now();
    await killPodContainer(NS, before.metadata?.name as string);
    const error = await call;
    const lostAfter = performance.now() - killedAt;
    console.info(
      `[daemonset] the call in flight failed ${Math.round(lostAfter)} ms after the agent's SIGKILL`,
    );
    expect(error).toBeInstanceOf(CallLostError);
    // The kubelet restarts the agent's container in the same pod; its app pod lost its connection
    // and exits.
    await eventually(
      async () => {
        const pod = await agentPod();
        const status = pod.status?.containerStatuses?.[0];
        return (status?.restartCount ?? 0) > restarts && status?.ready ? true : undefined;
      },
      120_000,
      "the agent restarted and ready",
    );
    await eventually(
      async () => {
        const running = (await appPods()).filter(
          (pod) => pod.status?.phase === "Running" && !pod.metadata?.deletionTimestamp,
        );
        return running.length === 0 ? true : undefined;
      },
      120_000,
      "the killed agent's app pod gone",
    );
    // The call was not sent again: the restarted agent has served no call before the next one.
    expect(await agentMetric("ociapp_agent_calls_in_flight")).toBe(0);
    expect(await agentMetric("ociapp_agent_requests_total", 'route="POST /v1/artifacts/execute"')).toBe(0);
    const after = await executor.execute<Reply>(artifact.path, { op: "echo", value: "after the kill" });
    expect(after.value).toBe("after the kill");
  });

  it("takes an agent's app pods with it when its pod is deleted (ownerReferences), and its DaemonSet's new agent serves", async () => {
    const executor = await client();
    await executor.execute(artifact.path, { op: "echo", value: "warm" });
    const old = await agentPod();
    const owned = (await appPods()).filter(
      (pod) => pod.metadata?.ownerReferences?.[0]?.uid === old.metadata?.uid,
    );
    expect(owned.length).toBeGreaterThan(0);
    await kubectl(["-n", NS, "delete", "pod", old.metadata?.name as string, "--wait=false"]);
    await eventually(
      async () => {
        const left = (await appPods()).filter(
          (pod) => pod.metadata?.ownerReferences?.[0]?.uid === old.metadata?.uid,
        );
        return left.length === 0 ? true : undefined;
      },
      120_000,
      "the old agent's app pods collected",
    );
    await eventually(
      async () => {
        const pod = await agentPod();
        return pod.metadata?.uid !== old.metadata?.uid && pod.status?.containerStatuses?.[0]?.ready
          ? true
          : undefined;
      },
      120_000,
      "a new agent pod ready",
    );
    await eventually(
      async () => ((await discoverAgents()).length === 1 ? true : undefined),
      60_000,
      "discovered again",
    );
    const fresh = await client();
    const reply = await fresh.execute<Reply>(artifact.path, { op: "echo", value: "new agent" });
    expect(reply.value).toBe("new agent");
  });
});

/**
 * A metric of the agent on this node (its /metrics, with the test's token): the sum of the samples
 * named `name` whose labels contain `labels` (0 when none).
 */
async function agentMetric(name: string, labels = ""): Promise<number> {
  const session = connect(`https://127.0.0.1:${PORT}`, { ca: metricsAccess.ca });
  try {
    session.on("error", () => undefined);
    const stream = session.request({ ":path": "/metrics", authorization: `Bearer ${metricsAccess.token}` });
    stream.setEncoding("utf8");
    let text = "";
    for await (const chunk of stream) text += chunk as string;
    let sum = 0;
    for (const line of text.split("\n")) {
      const match = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
      if (match?.[1] === name && (match[2] ?? "").includes(labels)) sum += Number(match[3]);
    }
    return sum;
  } finally {
    session.close();
  }
}

/** A server-side dry-run create of `pod` with a bearer token: whether admission allowed it, and why not. */
async function createAs(token: string, pod: V1Pod): Promise<{ allowed: boolean; message: string }> {
  const dir = await mkdtemp(join(tmpdir(), "ociapp-token-"));
  try {
    const admin = await readFile(inject("kubeconfig"), "utf8");
    const ca = /certificate-authority-data: (\S+)/.exec(admin)?.[1] as string;
    const server = /server: (\S+)/.exec(admin)?.[1] as string;
    const config = join(dir, "kubeconfig");
    await writeFile(
      config,
      [
        "apiVersion: v1",
        "kind: Config",
        `clusters: [{ name: c, cluster: { server: "${server}", certificate-authority-data: ${ca} } }]`,
        `users: [{ name: u, user: { token: "${token}" } }]`,
        "contexts: [{ name: x, context: { cluster: c, user: u } }]",
        "current-context: x",
        "",
      ].join("\n"),
      { mode: 0o600 },
    );
    const child = run(
      inject("kubectl"),
      ["--kubeconfig", config, "create", "--dry-run=server", "-o", "name", "-f", "-"],
      {
        timeout: 60_000,
      },
    );
    child.child.stdin?.end(JSON.stringify(pod));
    try {
      await child;
      return { allowed: true, message: "" };
    } catch (error) {
      return { allowed: false, message: String((error as { stderr?: string }).stderr ?? error) };
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
