import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { Engine } from "../../src/engines/engine.js";
import { KubernetesEngine, type KubernetesEngineOptions } from "../../src/engines/kubernetes/index.js";
import { DockerEngine, type RuntimeOptions } from "../../src/index.js";

// The engine the runtime's engine tests run against, chosen by the environment (scripts/engine-matrix.sh):
// OCIAPP_TEST_ENGINE_KIND "docker" (default), "classic" or "podman" with OCIAPP_TEST_ENGINE_SOCKET (a
// Docker-API engine's socket), or "kubernetes": a KubernetesEngine on the single-node cluster of
// scripts/k8s.sh, the test process standing in for the agent on the node (a kubeconfig, the node's
// name, the cluster's registry; pods in the namespace OCIAPP_TEST_K8S_NAMESPACE).

export const ENGINE_KIND = process.env.OCIAPP_TEST_ENGINE_KIND ?? "docker";
export const KUBERNETES = ENGINE_KIND === "kubernetes";
/** Where the runtime's engine tests put their pods, and the imagePullSecret there. */
export const K8S_NAMESPACE = process.env.OCIAPP_TEST_K8S_NAMESPACE ?? "ociapp-engine-test";
export const K8S_PULL_SECRET = "ociapp-registry-pull";

/** What `scripts/k8s.sh env` prints, parsed (KUBECONFIG, the registry, the node, kubectl's folder). */
export interface ClusterEnv {
  kubeconfig: string;
  kubectl: string;
  registryUrl: string;
  registryUsername: string;
  registryPasswordFile: string;
  containerdSocket: string;
  node: string;
}

let cluster: ClusterEnv | undefined;

export function clusterEnv(): ClusterEnv {
  if (cluster) return cluster;
  const script = fileURLToPath(new URL("../../../../scripts/k8s.sh", import.meta.url));
  const text = execFileSync("bash", [script, "env"], { encoding: "utf8" });
  const value = (name: string) => {
    const found = new RegExp(`^export ${name}=(.*)$`, "m").exec(text)?.[1];
    if (!found) throw new Error(`scripts/k8s.sh env printed no ${name}`);
    return found;
  };
  cluster = {
    kubeconfig: value("KUBECONFIG"),
    kubectl: `${value("PATH").replace(/:\$PATH$/, "")}/kubectl`,
    registryUrl: value("OCIAPP_K8S_REGISTRY_URL"),
    registryUsername: value("OCIAPP_K8S_REGISTRY_USERNAME"),
    registryPasswordFile: value("OCIAPP_K8S_REGISTRY_PASSWORD_FILE"),
    containerdSocket: value("OCIAPP_K8S_CONTAINERD_SOCKET"),
    node: value("OCIAPP_K8S_NODE"),
  };
  return cluster;
}

/** KubernetesEngine options for the cluster of scripts/k8s.sh, for a process on its node. */
export function kubernetesTestOptions(
  namespace = K8S_NAMESPACE,
  extra: Partial<KubernetesEngineOptions> = {},
): KubernetesEngineOptions {
  const env = clusterEnv();
  return {
    kubeconfig: env.kubeconfig,
    nodeName: env.node,
    namespace,
    owner: null,
    registry: {
      url: env.registryUrl,
      username: env.registryUsername,
      passwordFile: env.registryPasswordFile,
      pullSecret: K8S_PULL_SECRET,
    },
    ...extra,
  };
}

/** A KubernetesEngine on the cluster of scripts/k8s.sh, for a process on its node. */
export function kubernetesTestEngine(namespace = K8S_NAMESPACE): KubernetesEngine {
  return new KubernetesEngine(kubernetesTestOptions(namespace));
}

/** The engine under test. */
export function testEngine(): Engine {
  if (KUBERNETES) return kubernetesTestEngine();
  const socketPath = process.env.OCIAPP_TEST_ENGINE_SOCKET;
  return socketPath ? new DockerEngine({ socketPath }) : new DockerEngine();
}

/**
 * Runtime options the engine under test needs beyond the defaults. Kubernetes: a pod's creation and
 * start take seconds (inside startupTimeout), and an exit is reported when the kubelet has seen it
 * (its PLEG relists every second) and the API server has its status, so both bounds are wider.
 */
export const ENGINE_RUNTIME_OPTIONS: RuntimeOptions = KUBERNETES
  ? { startupTimeout: 30_000, exitReportTimeout: 30_000 }
  : {};
