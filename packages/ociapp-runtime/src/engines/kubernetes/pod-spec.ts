import type { V1Container, V1Pod, V1Volume, V1VolumeMount } from "@kubernetes/client-node";
import { OptionsError } from "../../errors.js";
import { CONTAINER_FOLDER, HOME_DIR, HOME_TMPFS } from "../../host/runtime-dir.js";
import type { ResolvedContainerOptions } from "../../options/container.js";
import type { ContainerSpec } from "../engine.js";
import type { ResolvedKubernetesOptions } from "./options.js";

/** On every pod this engine makes: what its watch and listings select. */
export const MANAGED_BY = { key: "app.kubernetes.io/managed-by", value: "ociapp-runtime" } as const;
/** "app" for an app's pod, "pull" for a pull probe (loadImage). */
export const ROLE_LABEL = "dev.ociapp.pod";
/** The app's container in its pod. */
export const APP_CONTAINER = "app";
/** What an image's VOLUME gets instead of a writable folder of containerd's on the node's disk. */
const VOLUME_SIZE = "64Mi";
/** A command no image has: a pull probe pulls the image, then fails to start, running nothing of it. */
export const PROBE_COMMAND = "/.ociapp-pull-probe/does-not-exist";

const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;

/** True when a label key and value are valid Kubernetes label syntax (a prefix-less name ≤ 63). */
export function isLabel(key: string, value: string): boolean {
  return LABEL_NAME.test(key) && LABEL_VALUE.test(value);
}

/** The runtime's ContainerSpec, with the image as the reference pods pull. */
export interface AppPodInput
  extends Pick<ContainerSpec, "name" | "env" | "labels" | "socketFolder" | "container"> {
  /** `<registry>/<repository>@sha256:<hex>`. */
  image: string;
  /** The image config's VOLUME paths. */
  volumes: string[];
}

/**
 * An app's pod: Docker's confinement defaults as pod settings (the runtime README's Kubernetes
 * section maps each one). Every runtime label is kept verbatim as an annotation (values such as
 * `sha256:...` or the owner identity are no valid label values); those that are valid labels are
 * labels too, so listings can select on them. Pinned to the node (`spec.nodeName`): the scheduler is
 * not involved, and the pod can only run where the socket folder is. Source: Kubernetes API
 * reference, Pod v1 (PodSpec, SecurityContext, Volume).
 */
export function appPod(input: AppPodInput, options: ResolvedKubernetesOptions): V1Pod {
  const c = input.container;
  const labels: Record<string, string> = { [MANAGED_BY.key]: MANAGED_BY.value, [ROLE_LABEL]: "app" };
  for (const [key, value] of Object.entries(input.labels)) if (isLabel(key, value)) labels[key] = value;
  const volumes: V1Volume[] = [
    // The container's socket folder on the host, read-only: the app connects to the runtime's socket
    // there and can write nothing (kubelet bind-mounts it with "ro").
    { name: "ociapp-socket", hostPath: { path: input.socketFolder, type: "Directory" } },
  ];
  const mounts: V1VolumeMount[] = [{ name: "ociapp-socket", mountPath: CONTAINER_FOLDER, readOnly: true }];
  // tmpfs mounts as memory-backed emptyDirs (inside the memory limit): an image's VOLUMEs (else
  // containerd makes writable folders on the node's disk for them), HOME, and container.tmpfs.
  const tmpfs = new Map<string, string>();
  for (const path of input.volumes) tmpfs.set(path, VOLUME_SIZE);
  tmpfs.set(HOME_DIR, tmpfsSize(HOME_TMPFS, HOME_DIR));
  for (const [path, spec] of Object.entries(c.tmpfs)) tmpfs.set(path, tmpfsSize(spec, path));
  let index = 0;
  for (const [path, size] of tmpfs) {
    const name = `tmpfs-${index++}`;
    volumes.push({ name, emptyDir: { medium: "Memory", sizeLimit: size } });
    mounts.push({ name, mountPath: path });
  }
  return pod(input.name, input.image, options, c, {
    labels,
    annotations: { ...input.labels },
    env: input.env,
    volumes,
    mounts,
  });
}

/** A pull probe: a pod of the image whose command does not exist, so it pulls and runs nothing. */
export function probePod(
  name: string,
  image: string,
  options: ResolvedKubernetesOptions,
  c: ResolvedContainerOptions,
): V1Pod {
  return pod(name, image, options, c, {
    labels: { [MANAGED_BY.key]: MANAGED_BY.value, [ROLE_LABEL]: "pull" },
    annotations: {},
    env: {},
    volumes: [],
    mounts: [],
    command: [PROBE_COMMAND],
  });
}

function pod(
  name: string,
  image: string,
  options: ResolvedKubernetesOptions,
  c: ResolvedContainerOptions,
  extra: {
    labels: Record<string, string>;
    annotations: Record<string, string>;
    env: Record<string, string>;
    volumes: V1Volume[];
    mounts: V1VolumeMount[];
    command?: string[];
  },
): V1Pod {
  if (c.networkMode !== "none") {
    throw new OptionsError(
      `Runtime option container.networkMode must be "none" with the KubernetesEngine (got ${JSON.stringify(c.networkMode)}): a pod always gets the cluster's network, which the engine cannot widen or narrow`,
    );
  }
  const limits: Record<string, string> = {};
  if (c.memory > 0) limits.memory = String(c.memory);
  if (c.nanoCpus > 0) limits.cpu = `${Math.max(1, Math.ceil(c.nanoCpus / 1_000_000))}m`;
  const requests = {
    cpu:
      limits.cpu && millicores(options.requests.cpu) > millicores(limits.cpu)
        ? limits.cpu
        : options.requests.cpu,
    memory:
      limits.memory && bytes(options.requests.memory) > c.memory ? limits.memory : options.requests.memory,
  };
  const container: V1Container = {
    name: APP_CONTAINER,
    image,
    imagePullPolicy: "IfNotPresent",
    ...(extra.command ? { command: extra.command } : {}),
    env: Object.entries(extra.env).map(([key, value]) => ({ name: key, value })),
    resources: { limits, requests },
    securityContext: {
      runAsUser: c.uid,
      runAsGroup: c.gid,
      runAsNonRoot: c.uid !== 0,
      readOnlyRootFilesystem: c.readonlyRootfs,
      allowPrivilegeEscalation: !c.noNewPrivileges,
      privileged: false,
      capabilities: { drop: [...c.capDrop] },
      seccompProfile: { type: "RuntimeDefault" },
    },
    volumeMounts: extra.mounts,
    // The app's own output is the log; no termination message file to write on a read-only root.
    terminationMessagePolicy: "FallbackToLogsOnError",
  };
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name,
      namespace: options.namespace,
      labels: extra.labels,
      annotations: extra.annotations,
      ...(options.owner ? { ownerReferences: [{ ...options.owner, controller: false }] } : {}),
    },
    spec: {
      nodeName: options.nodeName,
      restartPolicy: "Never",
      // No credentials for the API server, no Service environment variables, no cluster DNS.
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      dnsPolicy: "Default",
      hostNetwork: false,
      hostPID: false,
      hostIPC: false,
      // container.init: the pod's pause process is PID 1 and reaps zombies, as Docker's init does.
      shareProcessNamespace: c.init,
      terminationGracePeriodSeconds: options.terminationGracePeriodSeconds,
      ...(c.runtime === "runc" ? {} : { runtimeClassName: c.runtime }),
      ...(options.registry.pullSecret ? { imagePullSecrets: [{ name: options.registry.pullSecret }] } : {}),
      securityContext: {
        runAsUser: c.uid,
        runAsGroup: c.gid,
        runAsNonRoot: c.uid !== 0,
        seccompProfile: { type: "RuntimeDefault" },
      },
      containers: [container],
      volumes: extra.volumes,
    },
  };
}

/** The `size=` of tmpfs mount options as a quantity ("size=64m" is "64Mi"); 64Mi when there is none. */
export function tmpfsSize(spec: string, path: string): string {
  const size = /(?:^|,)size=(\d+)([kmg]?)(?:,|$)/i.exec(spec);
  if (!size) {
    if (/(?:^|,)size=/.test(spec)) {
      throw new OptionsError(
        `Runtime option container.tmpfs["${path}"] has a size the KubernetesEngine cannot read: ${spec}`,
      );
    }
    return "64Mi";
  }
  const unit = { "": "", k: "Ki", m: "Mi", g: "Gi" }[(size[2] ?? "").toLowerCase() as "" | "k" | "m" | "g"];
  return `${size[1]}${unit}`;
}

function millicores(quantity: string): number {
  return quantity.endsWith("m") ? Number(quantity.slice(0, -1)) : Number(quantity) * 1000;
}

function bytes(quantity: string): number {
  const match = /^([0-9.]+)([A-Za-z]*)$/.exec(quantity);
  if (!match) return Number.NaN;
  const factor: Record<string, number> = {
    "": 1,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    Ki: 1024,
    Mi: 1024 ** 2,
    Gi: 1024 ** 3,
  };
  return Number(match[1]) * (factor[match[2] ?? ""] ?? Number.NaN);
}
