import { readFileSync } from "node:fs";
import { OptionsError } from "../../errors.js";
import { isLoopback } from "../../util/loopback.js";

/** The registry artifacts go through: the engine pushes there, the node's kubelet pulls from there. */
export interface KubernetesRegistryOptions {
  /**
   * The registry as this process reaches it: `https://host[:port]`, or `http://` for a registry on a
   * loopback address (the node's containerd also pulls plain HTTP only from loopback).
   */
  url: string;
  /** The registry's name in image references, as the node's container runtime resolves it. Default: the url's host[:port]. */
  nodeHost?: string;
  /** The repository artifacts are pushed to. Default "ociapp/artifacts". */
  repository?: string;
  username?: string;
  /** Prefer `passwordFile` (read at construction; a mounted Secret). */
  password?: string;
  passwordFile?: string;
  /** PEM of the CA that signs the registry's certificate (default: Node's CAs). */
  ca?: string;
  /**
   * Name of a `kubernetes.io/dockerconfigjson` Secret in the pods' namespace with credentials the node
   * pulls with (`imagePullSecrets`); none when the registry allows anonymous pulls.
   */
  pullSecret?: string;
}

/** The owner every app pod names in `ownerReferences`: it is garbage-collected with its owner. */
export interface KubernetesOwner {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
}

export interface KubernetesEngineOptions {
  /**
   * A kubeconfig file. Default: `@kubernetes/client-node`'s `loadFromDefault()`: `$KUBECONFIG`, else
   * `~/.kube/config`, else the in-cluster service account (KUBERNETES_SERVICE_HOST/PORT and the
   * projected token, which it re-reads as it rotates).
   */
  kubeconfig?: string;
  /** Namespace of the app pods. Default `$OCIAPP_POD_NAMESPACE`, else the service account's namespace, else "default". */
  namespace?: string;
  /** The node every pod is pinned to (`spec.nodeName`; the scheduler is not involved). Default `$OCIAPP_NODE_NAME`; required. */
  nodeName?: string;
  /**
   * The pods' owner. Default: the agent's own pod from `$OCIAPP_POD_NAME` and `$OCIAPP_POD_UID` (the
   * downward API), when both are set; `null` for none.
   */
  owner?: KubernetesOwner | null;
  registry: KubernetesRegistryOptions;
  /**
   * Resource requests of each app pod (scheduling only; the limits are `container.memory` and
   * `container.nanoCpus`). Default `{ cpu: "10m", memory: "32Mi" }`, each at most the limit: requests
   * equal to the 1-CPU default limit would fit two pods on a 2-CPU node.
   */
  requests?: { cpu?: string; memory?: string };
  /** Seconds between SIGTERM and SIGKILL when a pod is deleted gracefully (`killContainer(id, "SIGTERM")`). Default 30. */
  terminationGracePeriodSeconds?: number;
  /** ms the node may take to pull an artifact's image when it is loaded. Default 300 000. */
  pullTimeout?: number;
  /** ms each API request may take (streams excepted). Default 30 000. */
  requestTimeout?: number;
}

export interface ResolvedKubernetesOptions {
  kubeconfig: string | undefined;
  namespace: string;
  nodeName: string;
  owner: KubernetesOwner | null;
  registry: Required<Pick<KubernetesRegistryOptions, "url" | "nodeHost" | "repository">> &
    Pick<KubernetesRegistryOptions, "username" | "password" | "ca" | "pullSecret">;
  requests: { cpu: string; memory: string };
  terminationGracePeriodSeconds: number;
  pullTimeout: number;
  requestTimeout: number;
}

const SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
/** A DNS-1123 label (namespaces) or subdomain (node and Secret names). */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const REPOSITORY = /^[a-z0-9]+([._/-][a-z0-9]+)*$/;
/** A Kubernetes quantity (resource.Quantity): "10m", "32Mi", "0.5", "1e3". */
const QUANTITY = /^[0-9]+(\.[0-9]+)?([eE][0-9]+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/;

/** Validates the options, filling defaults from the environment. Throws OptionsError naming the option. */
export function resolveKubernetesOptions(
  options: KubernetesEngineOptions,
  env: NodeJS.ProcessEnv = process.env,
): ResolvedKubernetesOptions {
  const fail = (message: string) => new OptionsError(`KubernetesEngine option ${message}`);
  if (typeof options !== "object" || options === null) throw fail("object required (got none)");
  const namespace = options.namespace ?? env.OCIAPP_POD_NAMESPACE ?? serviceAccountNamespace() ?? "default";
  if (!DNS_LABEL.test(namespace))
    throw fail(`namespace must be a DNS label (got ${JSON.stringify(namespace)})`);
  const nodeName = options.nodeName ?? env.OCIAPP_NODE_NAME;
  if (!nodeName || !DNS_SUBDOMAIN.test(nodeName)) {
    throw fail(
      `nodeName must name the node the pods run on (got ${JSON.stringify(nodeName)}); in a pod, set OCIAPP_NODE_NAME from the downward API (spec.nodeName)`,
    );
  }
  let owner: KubernetesOwner | null = null;
  if (options.owner !== undefined) owner = options.owner;
  else if (env.OCIAPP_POD_NAME && env.OCIAPP_POD_UID) {
    owner = { apiVersion: "v1", kind: "Pod", name: env.OCIAPP_POD_NAME, uid: env.OCIAPP_POD_UID };
  }
  if (owner && !(owner.apiVersion && owner.kind && owner.name && owner.uid)) {
    throw fail("owner needs apiVersion, kind, name and uid");
  }
  const registry = options.registry;
  if (typeof registry !== "object" || registry === null) throw fail("registry is required");
  let url: URL;
  try {
    url = new URL(registry.url);
  } catch {
    throw fail(`registry.url must be a URL (got ${JSON.stringify(registry.url)})`);
  }
  if (url.protocol !== "https:" && !(url.protocol === "http:" && isLoopback(url.hostname))) {
    throw fail(`registry.url must be https://, or http:// on a loopback address (got ${url.origin})`);
  }
  const repository = registry.repository ?? "ociapp/artifacts";
  if (!REPOSITORY.test(repository))
    throw fail(`registry.repository is not a repository name (got ${repository})`);
  if (registry.pullSecret !== undefined && !DNS_SUBDOMAIN.test(registry.pullSecret)) {
    throw fail(`registry.pullSecret must name a Secret (got ${JSON.stringify(registry.pullSecret)})`);
  }
  let password = registry.password;
  if (registry.passwordFile !== undefined) {
    try {
      password = readFileSync(registry.passwordFile, "utf8").trim();
    } catch (error) {
      throw fail(`registry.passwordFile cannot be read: ${(error as Error).message}`);
    }
  }
  const requests = { cpu: options.requests?.cpu ?? "10m", memory: options.requests?.memory ?? "32Mi" };
  for (const [name, value] of Object.entries(requests)) {
    if (!QUANTITY.test(value))
      throw fail(`requests.${name} must be a quantity such as "10m" or "32Mi" (got ${value})`);
  }
  return {
    kubeconfig: options.kubeconfig,
    namespace,
    nodeName,
    owner,
    registry: {
      url: url.origin,
      nodeHost: registry.nodeHost ?? url.host,
      repository,
      ...(registry.username === undefined ? {} : { username: registry.username }),
      ...(password === undefined ? {} : { password }),
      ...(registry.ca === undefined ? {} : { ca: registry.ca }),
      ...(registry.pullSecret === undefined ? {} : { pullSecret: registry.pullSecret }),
    },
    requests,
    terminationGracePeriodSeconds: integer(
      options.terminationGracePeriodSeconds,
      30,
      0,
      86_400,
      "terminationGracePeriodSeconds",
      fail,
    ),
    pullTimeout: integer(options.pullTimeout, 300_000, 1_000, 86_400_000, "pullTimeout", fail),
    requestTimeout: integer(options.requestTimeout, 30_000, 100, 3_600_000, "requestTimeout", fail),
  };
}

function integer(
  value: number | undefined,
  fallback: number,
  min: number,
  max: number,
  name: string,
  fail: (message: string) => OptionsError,
): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw fail(`${name} must be an integer between ${min} and ${max} (got ${String(value)})`);
  }
  return value;
}

function serviceAccountNamespace(): string | undefined {
  try {
    return readFileSync(SERVICE_ACCOUNT_NAMESPACE, "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}
