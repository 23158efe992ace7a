import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { promisify } from "node:util";
import type { V1Pod } from "@kubernetes/client-node";
import { clusterEnv, K8S_PULL_SECRET } from "./test-engine.js";

// What the runtime's engine tests do to the cluster from outside the engine: kubectl with the
// admin kubeconfig, ctr on the node's containerd, and the registry's HTTP API.

const run = promisify(execFile);

export async function kubectl(args: string[], input?: string): Promise<string> {
  const env = clusterEnv();
  const child = run(env.kubectl, ["--kubeconfig", env.kubeconfig, ...args], { maxBuffer: 16 * 1024 * 1024 });
  if (input !== undefined) child.child.stdin?.end(input);
  return (await child).stdout;
}

/** The namespace and its imagePullSecret (the registry's credentials), made when missing. */
export async function prepareNamespace(namespace: string): Promise<void> {
  const env = clusterEnv();
  const password = (await readFile(env.registryPasswordFile, "utf8")).trim();
  const host = new URL(env.registryUrl).host;
  const auth = Buffer.from(`${env.registryUsername}:${password}`).toString("base64");
  const dockerconfig = JSON.stringify({ auths: { [host]: { auth } } });
  const objects = [
    { apiVersion: "v1", kind: "Namespace", metadata: { name: namespace } },
    {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: K8S_PULL_SECRET, namespace },
      type: "kubernetes.io/dockerconfigjson",
      data: { ".dockerconfigjson": Buffer.from(dockerconfig).toString("base64") },
    },
  ];
  await kubectl(["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "List", items: objects }));
}

export async function readPod(namespace: string, name: string): Promise<V1Pod> {
  return JSON.parse(await kubectl(["-n", namespace, "get", "pod", name, "-o", "json"])) as V1Pod;
}

/**
 * SIGKILL to a pod's app container from outside Kubernetes, through the node's containerd (what
 * `docker kill` is for DockerEngine: the kernel's OOM killer or an operator on the node).
 */
export async function killPodContainer(namespace: string, name: string): Promise<void> {
  const pod = await readPod(namespace, name);
  const id = pod.status?.containerStatuses?.[0]?.containerID?.replace(/^[a-z]+:\/\//, "");
  if (!id) throw new Error(`pod ${name} has no container yet`);
  await run("ctr", [
    "-a",
    clusterEnv().containerdSocket,
    "-n",
    "k8s.io",
    "tasks",
    "kill",
    "-s",
    "SIGKILL",
    id,
  ]);
}

/** Removes an artifact's image from the registry (by digest) and from the node's containerd. */
export async function removeArtifactImage(reference: string): Promise<void> {
  const env = clusterEnv();
  const [name, digest] = reference.split("@") as [string, string];
  const repository = name.slice(name.indexOf("/") + 1);
  const password = (await readFile(env.registryPasswordFile, "utf8")).trim();
  const response = await fetch(`${env.registryUrl}/v2/${repository}/manifests/${digest}`, {
    method: "DELETE",
    headers: {
      authorization: `Basic ${Buffer.from(`${env.registryUsername}:${password}`).toString("base64")}`,
    },
  });
  if (response.status !== 202 && response.status !== 404) {
    throw new Error(`the registry refused to delete ${reference}: HTTP ${response.status}`);
  }
  await run("ctr", ["-a", env.containerdSocket, "-n", "k8s.io", "images", "rm", reference]).catch(
    () => undefined,
  );
}
