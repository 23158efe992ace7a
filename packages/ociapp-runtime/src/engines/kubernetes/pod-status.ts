import type { V1ContainerStatus, V1Pod } from "@kubernetes/client-node";
import type { ContainerExit } from "../engine.js";
import { APP_CONTAINER } from "./pod-spec.js";
import type { PodRecord } from "./pod-watch.js";

/**
 * Waiting reasons that mean the node cannot pull the image (kubelet: pkg/kubelet/images/types.go,
 * ErrImagePull and friends, and ImagePullBackOff once it retries).
 */
const PULL_FAILURES = new Set([
  "ErrImagePull",
  "ImagePullBackOff",
  "InvalidImageName",
  "ErrImageNeverPull",
  "RegistryUnavailable",
  "SignatureValidationFailed",
  "ImageInspectError",
]);
/** Waiting reasons after the pull: the container could not be made or started (pkg/kubelet/container). */
const START_FAILURES = new Set([
  "CreateContainerConfigError",
  "CreateContainerError",
  "RunContainerError",
  "PreCreateHookError",
  "PreStartHookError",
  "PostStartHookError",
]);

/** Where a pod's app container is, as its status says. */
export type PodProgress =
  | { kind: "pending" }
  | { kind: "pull-failed"; message: string }
  | { kind: "start-failed"; message: string }
  | { kind: "started" }
  | { kind: "ended"; exit: ContainerExit }
  | { kind: "gone" };

function appStatus(pod: V1Pod | undefined): V1ContainerStatus | undefined {
  return pod?.status?.containerStatuses?.find((status) => status.name === APP_CONTAINER);
}

/**
 * Reads a record: the app container's state (`status.containerStatuses[].state`: waiting with a
 * reason, running, or terminated with exitCode and reason, "OOMKilled" when the kernel's OOM killer
 * ended it: the CRI reports it from the cgroup's OOM event), the pod's phase, and whether it was
 * deleted. Source: Kubernetes API reference, ContainerStatus and ContainerState.
 */
export function progressOf(record: PodRecord): PodProgress {
  const pod = record.latest;
  const status = appStatus(pod);
  const terminated = status?.state?.terminated;
  if (terminated) {
    return {
      kind: "ended",
      exit: { exitCode: terminated.exitCode, oomKilled: terminated.reason === "OOMKilled" },
    };
  }
  if (record.deleted) return { kind: "gone" };
  const waiting = status?.state?.waiting;
  if (waiting?.reason && PULL_FAILURES.has(waiting.reason)) {
    return { kind: "pull-failed", message: `${waiting.reason}: ${waiting.message ?? ""}`.trim() };
  }
  if (waiting?.reason && START_FAILURES.has(waiting.reason)) {
    return { kind: "start-failed", message: `${waiting.reason}: ${waiting.message ?? ""}`.trim() };
  }
  if (status?.state?.running) return { kind: "started" };
  // Rejected by the kubelet before any container existed (admission: OutOfcpu, NodeAffinity, ...).
  if (pod?.status?.phase === "Failed") {
    return {
      kind: "start-failed",
      message: `${pod.status.reason ?? "Failed"}: ${pod.status.message ?? "the pod failed before its container started"}`,
    };
  }
  return { kind: "pending" };
}

/** The container's id in the node's containerd ("containerd://<id>" in the status), once it has one. */
export function runtimeContainerId(pod: V1Pod | undefined): string | undefined {
  const id = appStatus(pod)?.containerID;
  return id?.replace(/^[a-z]+:\/\//, "");
}

/**
 * Settles with the first value `check` returns for the record (checked now and after every change),
 * or rejects with the signal's reason. The listener is removed either way.
 */
export function whenRecord<T>(
  record: PodRecord,
  check: (record: PodRecord) => T | undefined,
  signal?: AbortSignal,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const first = check(record);
    if (first !== undefined) {
      resolve(first);
      return;
    }
    const onAbort = () => {
      stop();
      reject(signal?.reason);
    };
    const stop = record.onChange(() => {
      const value = check(record);
      if (value === undefined) return;
      stop();
      signal?.removeEventListener("abort", onAbort);
      resolve(value);
    });
    if (signal?.aborted) onAbort();
    else signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Anything but pending settles a wait: for an app pod, running, ended, gone or failed; for a pull
 * probe, anything past the pull (its container failing to start is the expected end).
 */
export function pastPending(progress: PodProgress): PodProgress | undefined {
  return progress.kind === "pending" ? undefined : progress;
}
