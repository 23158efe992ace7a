import type { IncomingMessage } from "node:http";
import type { V1Pod, V1PodList } from "@kubernetes/client-node";
import { type KubeApi, KubernetesStatusError, query } from "./api.js";

/** Longest watch event line read (one pod object is a few KiB). */
const MAX_EVENT_BYTES = 4 * 1024 * 1024;
/** The API server ends each watch after this long; the informer watches again from where it was. */
const WATCH_SECONDS = 240;
/** Between failed attempts to list or watch (the API server is down, say). */
const RETRY_MS = 1_000;

/** What the informer knows of one pod. */
export class PodRecord {
  /** The newest object seen; kept after deletion (its last state). */
  latest: V1Pod | undefined;
  /** The pod was deleted (a DELETED event, or a relist that no longer has it). */
  deleted = false;
  private readonly listeners = new Set<() => void>();

  constructor(readonly name: string) {}

  /** Calls `listener` after every change; returns the function that stops it. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  update(pod: V1Pod | undefined, deleted: boolean): void {
    if (pod) this.latest = pod;
    if (deleted) this.deleted = true;
    for (const listener of [...this.listeners]) listener();
  }
}

/**
 * The pods of one namespace and node that carry a label selector, kept current by the client-go
 * informer pattern (client-go tools/cache Reflector: ListAndWatch): a list gives the state and its
 * `resourceVersion`, a watch from that version delivers every change after it (bookmarks advance it);
 * a watch that ends is opened again from the last version seen, and a `410 Gone` (the version is older
 * than the server's watch cache) starts over with a list. Source: Kubernetes API concepts, "Efficient
 * detection of changes".
 *
 * Only pods someone `track`s are recorded, and the list and watch run only while there are such pods:
 * an idle engine holds no connection open. The watch stream's socket is unref'd.
 */
export class PodInformer {
  private readonly records = new Map<string, PodRecord>();
  private resourceVersion: string | undefined;
  private listing: Promise<void> | undefined;
  private stream: IncomingMessage | undefined;
  private running = false;
  private stopper: AbortController | undefined;
  /** The list or watch failed last time (reset by the next success). */
  lastError: Error | undefined;

  constructor(
    private readonly api: KubeApi,
    private readonly path: string,
    private readonly selectors: { labelSelector: string; fieldSelector: string },
  ) {}

  /** True while the watch is connected: a missing event then means the change has not happened. */
  get healthy(): boolean {
    return this.stream !== undefined;
  }

  /**
   * Starts recording `name` and resolves once the informer has a resourceVersion to watch from, so
   * that nothing that happens to the pod afterwards is missed (create it only then). Rejects with the
   * list's EngineUnavailableError when the first list fails (bounded by the API request timeout).
   */
  async track(name: string): Promise<PodRecord> {
    let record = this.records.get(name);
    if (!record) {
      record = new PodRecord(name);
      this.records.set(name, record);
    }
    if (this.resourceVersion === undefined) {
      // Shared by every caller, so no one caller's signal ends it (the request timeout bounds it).
      this.listing ??= this.list().finally(() => {
        this.listing = undefined;
      });
      try {
        await this.listing;
      } catch (error) {
        this.forget(name);
        throw error;
      }
    }
    if (!this.running) void this.loop();
    return record;
  }

  /** Marks a pod as known to exist (the create answer): a relist that lacks it then means it was deleted. */
  created(name: string, pod: V1Pod): void {
    const record = this.records.get(name);
    if (record && !record.latest) record.update(pod, false);
  }

  forget(name: string): void {
    this.records.delete(name);
    if (this.records.size === 0) this.stop();
  }

  /** Stops the watch (idle, or the engine is closing); the next track() lists again. */
  stop(): void {
    this.stopper?.abort();
    this.stopper = undefined;
    const stream = this.stream;
    this.stream = undefined;
    stream?.destroy();
    this.resourceVersion = undefined;
  }

  private async list(signal?: AbortSignal): Promise<void> {
    const list = await this.api.request<V1PodList>("GET", `${this.path}${query(this.selectors)}`, {
      action: "list pods",
      ...(signal ? { signal } : {}),
    });
    const names = new Set<string>();
    for (const pod of list.items) {
      const name = pod.metadata?.name;
      if (!name) continue;
      names.add(name);
      this.records.get(name)?.update(pod, false);
    }
    // A pod seen before that the list lacks was deleted while nobody watched.
    for (const record of this.records.values()) {
      if (record.latest && !names.has(record.name) && !record.deleted) record.update(undefined, true);
    }
    this.resourceVersion = list.metadata?.resourceVersion ?? "0";
    this.lastError = undefined;
  }

  private async loop(): Promise<void> {
    this.running = true;
    const stopper = new AbortController();
    this.stopper = stopper;
    try {
      while (this.records.size > 0 && !stopper.signal.aborted) {
        try {
          if (this.resourceVersion === undefined) await this.list(stopper.signal);
          await this.watchOnce(stopper.signal);
        } catch (error) {
          if (stopper.signal.aborted) break;
          this.lastError = error as Error;
          if (error instanceof KubernetesStatusError && error.status === 410) {
            this.resourceVersion = undefined;
            continue;
          }
          await new Promise((resolve) => setTimeout(resolve, RETRY_MS).unref());
        }
      }
    } finally {
      this.running = false;
      if (this.stopper === stopper) this.stopper = undefined;
    }
  }

  /** One watch request, until the server ends it (its timeout), it fails, or stop(). */
  private async watchOnce(signal: AbortSignal): Promise<void> {
    const path = `${this.path}${query({
      ...this.selectors,
      watch: true,
      resourceVersion: this.resourceVersion,
      allowWatchBookmarks: true,
      timeoutSeconds: WATCH_SECONDS,
    })}`;
    const stream = await this.api.stream(path, "watch pods", signal);
    if (signal.aborted) {
      stream.destroy();
      return;
    }
    this.stream = stream;
    this.lastError = undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        let pending = "";
        stream.on("data", (chunk: Buffer) => {
          pending += chunk.toString("utf8");
          let newline = pending.indexOf("\n");
          while (newline >= 0) {
            const line = pending.slice(0, newline);
            pending = pending.slice(newline + 1);
            try {
              this.onEvent(line);
            } catch (error) {
              stream.destroy();
              reject(error);
              return;
            }
            newline = pending.indexOf("\n");
          }
          if (pending.length > MAX_EVENT_BYTES) {
            stream.destroy();
            reject(new Error(`a watch event was longer than ${MAX_EVENT_BYTES} bytes`));
          }
        });
        stream.once("end", resolve);
        stream.once("error", reject);
        stream.once("close", resolve);
      });
    } finally {
      if (this.stream === stream) this.stream = undefined;
    }
  }

  private onEvent(line: string): void {
    if (!line.trim()) return;
    const event = JSON.parse(line) as {
      type?: string;
      object?: V1Pod & { code?: number; message?: string; kind?: string };
    };
    const object = event.object;
    if (event.type === "ERROR") {
      const code = object?.code ?? 500;
      throw new KubernetesStatusError(code, undefined, `the pod watch ended: ${object?.message ?? "error"}`);
    }
    const version = object?.metadata?.resourceVersion;
    if (version) this.resourceVersion = version;
    if (event.type === "BOOKMARK" || !object) return;
    const name = object.metadata?.name;
    const record = name === undefined ? undefined : this.records.get(name);
    if (!record) return;
    record.update(object, event.type === "DELETED");
  }
}
