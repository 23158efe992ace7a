import type { V1Pod, V1PodList } from "@kubernetes/client-node";
import { EngineUnavailableError } from "../../errors.js";
import { type KubeApi, KubernetesStatusError, query } from "./api.js";
import type { PodInformer } from "./pod-watch.js";

/**
 * The pod calls of one namespace and node (Kubernetes API reference, Pod v1: create, delete, list),
 * with the engine's error mapping: a refusal is EngineUnavailableError naming the API server, a pod
 * already gone is no error for a delete.
 */
export class PodClient {
  readonly path: string;

  constructor(
    readonly api: KubeApi,
    namespace: string,
    private readonly nodeName: string,
    private readonly informer: PodInformer,
  ) {
    this.path = `/api/v1/namespaces/${namespace}/pods`;
  }

  /**
   * Creates a pod and tells the informer it exists. The request is not ended by the caller's signal:
   * a server that got it may create the pod anyway, so the caller stops waiting at once and its
   * clean-up deletes the pod by name.
   */
  async create(pod: V1Pod, signal?: AbortSignal): Promise<void> {
    const name = pod.metadata?.name as string;
    const creating = this.api.request<V1Pod>("POST", this.path, { body: pod, action: `create pod ${name}` });
    creating.catch(() => undefined);
    try {
      this.informer.created(name, await untilAborted(creating, signal));
    } catch (error) {
      throw this.refusal(error, `create pod ${name}`);
    }
  }

  /** Deletes a pod (grace in seconds; undefined: the pod's own). A pod already gone is not an error. */
  async delete(name: string, grace: number | undefined, signal?: AbortSignal): Promise<void> {
    try {
      await this.api.request("DELETE", `${this.path}/${encodeURIComponent(name)}`, {
        body: {
          kind: "DeleteOptions",
          apiVersion: "v1",
          ...(grace === undefined ? {} : { gracePeriodSeconds: grace }),
        },
        action: `delete pod ${name}`,
        ...(signal ? { signal } : {}),
      });
    } catch (error) {
      if (error instanceof KubernetesStatusError && error.status === 404) return;
      throw this.refusal(error, `delete pod ${name}`);
    }
  }

  /** This node's pods matching a label selector. */
  async list(labelSelector: string, signal?: AbortSignal, limit?: number): Promise<V1Pod[]> {
    try {
      const list = await this.api.request<V1PodList>(
        "GET",
        `${this.path}${query({ labelSelector, fieldSelector: `spec.nodeName=${this.nodeName}`, limit })}`,
        { action: "list pods", ...(signal ? { signal } : {}) },
      );
      return list.items;
    } catch (error) {
      throw this.refusal(error, "list pods");
    }
  }

  /** An error status as EngineUnavailableError naming the server; anything else as it is. */
  refusal(error: unknown, action: string): Error {
    if (error instanceof KubernetesStatusError) {
      return new EngineUnavailableError(`${this.api.where} refused to ${action}: ${error.message}`, {
        cause: error,
      });
    }
    return error as Error;
  }
}

function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () =>
      reject(new EngineUnavailableError("the pod was not created in time", { cause: signal.reason }));
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
