import { randomBytes } from "node:crypto";
import { KubeConfig, type V1Pod } from "@kubernetes/client-node";
import { ArtifactError, EngineUnavailableError, OptionsError } from "../../errors.js";
import { within } from "../../util/timers.js";
import type {
  ContainerExit,
  ContainerHandle,
  ContainerSpec,
  Engine,
  ListedContainer,
  LoadImageOptions,
} from "../engine.js";
import { KubeApi, KubernetesStatusError } from "./api.js";
import { ArtifactRegistry } from "./images.js";
import {
  type KubernetesEngineOptions,
  type ResolvedKubernetesOptions,
  resolveKubernetesOptions,
} from "./options.js";
import { PodLogFollower } from "./pod-logs.js";
import { APP_CONTAINER, appPod, isLabel, MANAGED_BY, ROLE_LABEL } from "./pod-spec.js";
import { pastPending, progressOf, whenRecord } from "./pod-status.js";
import { PodInformer, type PodRecord } from "./pod-watch.js";
import { PodClient } from "./pods.js";
import { pullOnNode } from "./pull-probe.js";

/** After the exit, how long the log stream may take to deliver the last output and end. */
const OUTPUT_END_GRACE_MS = 5_000;
/** A finished pod nobody deleted (its engine's process died) is deleted after this long. */
const FINISHED_POD_TTL_MS = 60_000;
/** How often a listing also deletes such leftovers, at most. */
const JANITOR_INTERVAL_MS = 60_000;

/** One app pod this engine made and watches. */
interface Watched {
  record: PodRecord;
  /** The artifact's manifest digest. */
  digest: string;
  logs: PodLogFollower;
  stopWatching: () => void;
}

/**
 * The runtime's Engine over the Kubernetes API: each container is a pod pinned to one node (the
 * agent's: `spec.nodeName`), owned by the agent's pod (`ownerReferences`: garbage-collected when it
 * goes), confined by pod settings equivalent to DockerEngine's defaults (pod-spec.ts), and reaching
 * the runtime's socket through a read-only hostPath mount of its folder. So the runtime must run on
 * that node (the agent as a DaemonSet pod with the socket parent folder as a hostPath; or a process on
 * the node itself, as the tests do).
 *
 * - Images: an artifact is pushed to a registry by digest (`loadImage`), and a pull probe pod makes
 *   the node pull it then, so an image the node cannot pull is an ArtifactError at load and the pull
 *   is not part of startupTimeout (images.ts).
 * - Exit reports: one list+watch of this node's pods (pod-watch.ts, the client-go informer pattern)
 *   gives each app container's `state.terminated` (exit code, `reason: OOMKilled`), and the pod's log,
 *   followed from its start (pod-logs.ts), is its output. A finished pod is deleted by the engine once
 *   it has read both (Docker's AutoRemove), and is no longer listed as a container.
 * - Signals: SIGKILL is a delete with `gracePeriodSeconds: 0` (the pod object goes at once and the
 *   kubelet kills the container); SIGTERM is a graceful delete (the pod's
 *   terminationGracePeriodSeconds). A pod starts when it is created: `startContainer` waits for its
 *   container to run.
 *
 * Differences from DockerEngine are listed in the runtime README's support table ("Kubernetes").
 */
export class KubernetesEngine implements Engine {
  readonly options: ResolvedKubernetesOptions;
  private readonly api: KubeApi;
  private readonly registry: ArtifactRegistry;
  private readonly informer: PodInformer;
  private readonly pods: PodClient;
  private readonly watched = new Map<string, Watched>();
  /** Digests whose image this engine saw the node pull (or find present). */
  private readonly pulled = new Set<string>();
  private ready: Promise<void> | undefined;
  private lastJanitor = 0;

  /** Throws OptionsError for invalid options or a kubeconfig that cannot be read. */
  constructor(options: KubernetesEngineOptions) {
    this.options = resolveKubernetesOptions(options);
    const config = new KubeConfig();
    try {
      if (this.options.kubeconfig !== undefined) config.loadFromFile(this.options.kubeconfig);
      else config.loadFromDefault();
    } catch (error) {
      throw new OptionsError(
        `KubernetesEngine option kubeconfig cannot be loaded: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    this.api = new KubeApi(config, this.options.requestTimeout);
    this.registry = new ArtifactRegistry(this.options.registry);
    this.informer = new PodInformer(this.api, `/api/v1/namespaces/${this.options.namespace}/pods`, {
      labelSelector: `${MANAGED_BY.key}=${MANAGED_BY.value}`,
      fieldSelector: `spec.nodeName=${this.options.nodeName}`,
    });
    this.pods = new PodClient(this.api, this.options.namespace, this.options.nodeName, this.informer);
  }

  /** How errors name the API server: "the Kubernetes API server at https://host:port". */
  get where(): string {
    return this.api.where;
  }

  /** The image reference pods of this artifact run (`<registry>/<repository>@<digest>`). */
  imageReference(digest: string): string {
    return this.registry.reference(digest);
  }

  ping(signal?: AbortSignal): Promise<void> {
    if (!this.ready) {
      // Listing this node's pods checks the server, the credentials and the RBAC the engine needs.
      this.ready = this.pods.list(`${MANAGED_BY.key}=${MANAGED_BY.value}`, signal, 1).then(() => {
        this.janitor();
      });
      this.ready.catch(() => {
        this.ready = undefined;
      });
    }
    return this.ready;
  }

  async checkRuntime(name: string, signal?: AbortSignal): Promise<void> {
    if (name === "runc") return;
    try {
      await this.api.request("GET", `/apis/node.k8s.io/v1/runtimeclasses/${encodeURIComponent(name)}`, {
        action: `read RuntimeClass ${name}`,
        ...(signal ? { signal } : {}),
      });
    } catch (error) {
      if (error instanceof KubernetesStatusError && error.status === 404) {
        throw new EngineUnavailableError(
          `the cluster at ${this.where} has no RuntimeClass "${name}": container.runtime names a RuntimeClass with the KubernetesEngine (its handler must be configured in the node's containerd)`,
        );
      }
      throw this.pods.refusal(error, `read RuntimeClass ${name}`);
    }
  }

  async hasImage(digest: string, signal?: AbortSignal): Promise<boolean> {
    await this.ping(signal);
    return this.pulled.has(digest) && (await this.registry.has(digest, signal));
  }

  /**
   * Pushes the artifact to the registry (checked as DockerEngine checks a load), then runs a pull probe
   * on the node: a pod of the image with a command that does not exist, so the kubelet pulls the image
   * and then fails to start it, running nothing. A pull the node refuses is ArtifactError with the
   * kubelet's reason; the probe is bounded by `pullTimeout` and deleted either way.
   */
  async loadImage(path: string, digest: string, options: LoadImageOptions): Promise<void> {
    await this.ping(options.signal);
    options.onProgress?.(0, 0);
    await this.registry.push(path, digest, options.maxUnpackedBytes, options.signal);
    await pullOnNode(this.pods, this.informer, this.options, {
      path,
      digest,
      reference: this.registry.reference(digest),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    this.pulled.add(digest);
    options.onProgress?.(1, 1);
  }

  /**
   * Creates the pod (it starts at once: a pod has no "created" state) with its exit watch and log
   * follower in place; startContainer then waits for its container to run.
   */
  async createContainer(spec: ContainerSpec, signal?: AbortSignal): Promise<ContainerHandle> {
    const name = podName(spec.name);
    const facts = await this.registry.imageFacts(spec.image, signal).catch((error: unknown) => {
      // The registry lost the artifact: the next start loads it again (hasImage says no).
      if (error instanceof ArtifactError) this.pulled.delete(spec.image);
      throw error;
    });
    const pod = appPod(
      {
        name,
        image: this.registry.reference(spec.image),
        env: spec.env,
        labels: spec.labels,
        socketFolder: spec.socketFolder,
        container: spec.container,
        volumes: facts.volumes,
      },
      this.options,
    );
    const record = await this.informer.track(name);
    const logs = new PodLogFollower(this.api, `${this.pods.path}/${name}`, APP_CONTAINER, spec.output);
    const stopWatching = record.onChange(() => {
      const progress = progressOf(record);
      if (progress.kind === "started" || progress.kind === "ended") logs.start();
    });
    const forget = () => {
      stopWatching();
      logs.stop();
      this.watched.delete(name);
      this.informer.forget(name);
    };
    this.watched.set(name, { record, logs, stopWatching, digest: spec.image });
    try {
      await this.pods.create(pod, signal);
    } catch (error) {
      forget();
      // A caller that gave up does not wait for the deletion (the API server may be wedged).
      const removal = this.pods.delete(name, 0).catch(() => undefined);
      if (!signal?.aborted) await removal;
      throw error;
    }
    const exit = (async (): Promise<ContainerExit> => {
      const ended = await whenRecord(record, (r) => {
        const progress = progressOf(r);
        return progress.kind === "ended" || progress.kind === "gone" ? progress : undefined;
      });
      // A container that never ran has no log to wait for; one that did ends its log after the exit.
      logs.start(true);
      await within(logs.ended, OUTPUT_END_GRACE_MS, true);
      spec.output.end();
      forget();
      // Docker's AutoRemove: the report is read, the pod can go.
      void this.pods.delete(name, 0).catch(() => undefined);
      return ended.kind === "ended" ? ended.exit : { exitCode: null, oomKilled: false };
    })();
    return { id: name, exit, release: forget };
  }

  /**
   * Waits until the pod's container runs (or already ended: the exit watch reports that). A pull the
   * node refuses is ArtifactError; a container the kubelet cannot create or start (its reason, e.g.
   * CreateContainerError) and a pod the kubelet rejects are EngineUnavailableError.
   */
  async startContainer(id: string, signal?: AbortSignal): Promise<void> {
    const watched = this.watched.get(id);
    if (!watched) throw new EngineUnavailableError(`pod ${id} is not one this engine watches`);
    const outcome = await whenRecord(watched.record, (r) => pastPending(progressOf(r)), signal).catch(
      (reason: unknown) => {
        throw new EngineUnavailableError(`the container of pod ${id} did not start in time`, {
          cause: reason,
        });
      },
    );
    if (outcome.kind === "pull-failed") {
      this.pulled.delete(watched.digest);
      throw new ArtifactError(
        watched.digest,
        `the node ${this.options.nodeName} cannot pull ${this.registry.reference(watched.digest)}: ${outcome.message}`,
      );
    }
    if (outcome.kind === "start-failed") {
      throw new EngineUnavailableError(`the kubelet could not start pod ${id}: ${outcome.message}`);
    }
  }

  async killContainer(id: string, signal: "SIGTERM" | "SIGKILL", abort?: AbortSignal): Promise<void> {
    await this.pods.delete(id, signal === "SIGKILL" ? 0 : undefined, abort);
  }

  async removeContainer(id: string, abort?: AbortSignal): Promise<void> {
    await this.pods.delete(id, 0, abort);
    const watched = this.watched.get(id);
    if (watched) {
      watched.stopWatching();
      watched.logs.stop();
    }
  }

  /**
   * This node's app pods carrying every given label (runtime labels are compared on the pods'
   * annotations, where they are kept verbatim). A pod that has finished counts as removed (Docker's
   * AutoRemove: its engine deletes it once it read the exit report) and is not listed.
   */
  async listContainers(labels: Record<string, string>): Promise<ListedContainer[]> {
    const selector = [`${MANAGED_BY.key}=${MANAGED_BY.value}`, `${ROLE_LABEL}=app`];
    for (const [key, value] of Object.entries(labels))
      if (isLabel(key, value)) selector.push(`${key}=${value}`);
    const pods = await this.pods.list(selector.join(","));
    this.janitor(pods);
    return pods
      .filter((pod) => !finished(pod))
      .filter((pod) =>
        Object.entries(labels).every(([key, value]) => pod.metadata?.annotations?.[key] === value),
      )
      .map((pod) => ({
        id: pod.metadata?.name ?? "",
        state: pod.metadata?.deletionTimestamp
          ? "removing"
          : pod.status?.phase === "Running"
            ? "running"
            : "created",
        labels: Object.fromEntries(
          Object.entries(pod.metadata?.annotations ?? {}).filter(([key]) => key.startsWith("dev.ociapp.")),
        ),
        image: pod.spec?.containers[0]?.image ?? "",
      }));
  }

  /** The labels of the image config of a reference this engine gave a pod (`...@sha256:<hex>`). */
  async imageLabels(reference: string): Promise<Record<string, string>> {
    const digest = /@(sha256:[a-f0-9]{64})$/.exec(reference)?.[1];
    if (!digest) throw new EngineUnavailableError(`${reference} is not an image reference of this engine's`);
    return (await this.registry.imageFacts(digest)).labels;
  }

  /**
   * Deletes finished pods of this node that nobody deleted for FINISHED_POD_TTL_MS: their engine's
   * process died before it could (the agent restarted in its pod, a host runtime was killed), and
   * their ownerReferences only act when the owner itself goes. Best effort, at most once a minute.
   */
  private janitor(pods?: V1Pod[]): void {
    const now = Date.now();
    if (now - this.lastJanitor < JANITOR_INTERVAL_MS) return;
    this.lastJanitor = now;
    void (async () => {
      const all = pods ?? (await this.pods.list(`${MANAGED_BY.key}=${MANAGED_BY.value}`));
      for (const pod of all) {
        const name = pod.metadata?.name;
        if (!name || this.watched.has(name) || !finished(pod)) continue;
        const finishedAt = pod.status?.containerStatuses?.[0]?.state?.terminated?.finishedAt;
        const at = finishedAt ? new Date(finishedAt).getTime() : 0;
        if (now - at >= FINISHED_POD_TTL_MS) await this.pods.delete(name, 0).catch(() => undefined);
      }
    })().catch(() => undefined);
  }
}

function finished(pod: V1Pod): boolean {
  return pod.status?.phase === "Succeeded" || pod.status?.phase === "Failed";
}

/** A pod name (DNS-1123 subdomain) from the runtime's container name. */
function podName(name: string): string {
  const cleaned = name
    .toLowerCase()
    .replace(/[^a-z0-9.-]+/g, "-")
    .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, "");
  return cleaned.slice(0, 253) || `ociapp-${randomBytes(6).toString("hex")}`;
}
