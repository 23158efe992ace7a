import type { Engine } from "../engines/engine.js";
import { ArtifactError, QueueFullError, RuntimeClosedError } from "../errors.js";
import { type ArtifactRef, channels, type ImageLoadMessage } from "../observability/channels.js";
import type { LogDispatcher } from "../observability/logs.js";
import type { ResolvedOptions } from "../options.js";
import type { ReceiveBudget } from "../protocol/receive-budget.js";
import { engineCall, untilAborted } from "../util/bounded.js";
import { within } from "../util/timers.js";
import { type Call, type CallHolder, CallQueue, PENDING, QUEUED } from "./call.js";
import { type ContainerStats, Instance, type InstanceEvents, type InstanceState } from "./instance.js";
import { type LatencyStats, LatencyWindow } from "./latency.js";
import { Standby } from "./standby.js";

/** Starts in flight per artifact at most: a burst should not fork a thundering herd of containers. */
const MAX_PARALLEL_STARTS = 2;
/** After a failed start, the reaper waits at least this long before topping up minInstances again. */
const START_RETRY_BACKOFF_MS = 5_000;

export interface PoolConfig {
  engine: Engine;
  options: ResolvedOptions;
  digest: string;
  /** Labels every container of this pool carries. */
  labels: Record<string, string>;
  /** A unique container name per call. */
  nextName: () => string;
  folderPrefix: string;
  /** The runtime-wide bound on partly received frames. */
  budget: ReceiveBudget;
  logs: LogDispatcher | undefined;
  /** The alias this pool serves (its settings are its own), if any. */
  alias?: string;
  now: () => number;
  /** Runs once before the runtime's first container (the orphan sweep). */
  prepare: () => Promise<void>;
}

export interface ArtifactStats {
  digest: string;
  /** The path this artifact was last resolved from. */
  path: string;
  instances: Record<InstanceState, number>;
  inFlight: number;
  queued: number;
  /** Containers started for this artifact since the runtime began. */
  coldStarts: number;
  /** Times the image was streamed to the engine (0 when the engine already held it). */
  imageLoads: number;
  /** Each container of this artifact: id, state, calls in flight, uptime, calls served. */
  containers: ContainerStats[];
  /** Percentiles of its last 1,024 answered calls, from execute() to the answer. */
  latency: LatencyStats;
  /** The alias its calls came through (a pool of its own), if any. */
  alias?: string;
  /** What this pool runs with: the Runtime's options, the service's settings, the app's defaults. */
  settings: {
    maxInstances: number;
    maxConcurrency: number;
    minInstances: number;
    /** Bytes; 0: no limit. */
    memory: number;
    /** Billionths of a CPU; 0: no limit. */
    nanoCpus: number;
  };
}

/**
 * The containers of one artifact. Dispatch goes to the least-loaded ready container; when all are
 * full, calls wait in one FIFO queue (bounded by maxQueue) while more containers start (up to
 * maxInstances, at most two starts at once). Containers announce readiness and freed slots, and the
 * queue drains into them.
 */
export class Pool implements CallHolder, InstanceEvents {
  path: string;
  coldStarts = 0;
  imageLoads = 0;
  /** minInstances applies once warm() or execute() touched the pool. */
  activated = false;
  /** When the pool last had a call or an instance (for forgetting pools nobody uses). */
  lastUsed: number;
  private readonly instances = new Set<Instance>();
  private readonly latency = new LatencyWindow();
  private refCache: ArtifactRef = { digest: "", path: "" };
  /** Ready instances, scanned on every dispatch (maxInstances is small). */
  private ready: Instance[] = [];
  private starting = 0;
  private readonly queue = new CallQueue();
  private image: Promise<void> | undefined;
  private closed = false;
  private readonly startWaiters = new Set<(error: unknown) => void>();
  /** Aborted by close(): ends image work (ping, inspect, load) in progress. */
  private readonly closeAbort = new AbortController();
  /** Refreshes the image's last-used record: set by ensureImage, run at the next ready container. */
  private markUsed: (() => void) | undefined;
  /** When a start last failed: the reaper does not retry minInstances in a tight loop. */
  private lastStartFailure = Number.NEGATIVE_INFINITY;
  /** Created, not started containers (the `standby` option; pool/standby.ts). */
  private readonly standby: Standby;

  constructor(
    private readonly config: PoolConfig,
    path: string,
  ) {
    this.path = path;
    this.lastUsed = config.now();
    this.standby = new Standby(config.options.standby, {
      newInstance: () => this.newInstance(),
      image: () => this.ensureImage(),
      now: config.now,
    });
  }

  get digest(): string {
    return this.config.digest;
  }

  /** The artifact as the lifecycle events name it (the path follows the latest resolution). */
  get ref(): ArtifactRef {
    if (this.refCache.path !== this.path) this.refCache = { digest: this.config.digest, path: this.path };
    return this.refCache;
  }

  /** True when the pool holds nothing: no containers (standby ones included), no queue. */
  get empty(): boolean {
    return this.instances.size === 0 && this.queue.length === 0 && this.standby.count === 0;
  }

  /** `now` is the pool's clock (config.now) read by the caller this tick, when it has read it. */
  submit(call: Call, now?: number): void {
    call.artifact ??= this.ref;
    let best: Instance | undefined;
    const ready = this.ready;
    for (let i = 0; i < ready.length; i++) {
      const instance = ready[i] as Instance;
      if (
        instance.inFlight < instance.capacity &&
        (best === undefined || instance.inFlight < best.inFlight)
      ) {
        best = instance;
      }
    }
    if (best !== undefined) {
      best.send(call);
      return;
    }
    if (call.prime) {
      // warm()'s prime requests only use a free slot: they never queue or start a container.
      call.fail(new Error("no free slot for a prime request"));
      return;
    }
    if (this.closed) {
      call.fail(new RuntimeClosedError());
      return;
    }
    const { maxQueue } = this.config.options;
    if (this.queue.length >= maxQueue) {
      call.fail(new QueueFullError(maxQueue));
      return;
    }
    call.stage = QUEUED;
    call.holder = this;
    this.queue.push(call);
    if (channels.callQueued.hasSubscribers) {
      channels.callQueued.publish({ id: call.id, artifact: this.ref, queueLength: this.queue.length });
    }
    this.activated = true;
    this.lastUsed = now ?? this.config.now();
    this.scale();
  }

  abandon(call: Call): void {
    if (call.stage === QUEUED) this.queue.remove(call);
  }

  /** Loads the image when needed, starts max(1, minInstances) containers and waits until they are ready. */
  async warm(signal?: AbortSignal): Promise<void> {
    this.activated = true;
    const target = Math.max(1, this.config.options.minInstances);
    for (;;) {
      if (this.closed) throw new RuntimeClosedError();
      signal?.throwIfAborted();
      if (this.ready.length >= target) {
        // The app primes itself (its prime() hook and its request path, in the container; bounded:
        // a hook that hangs does not hold warm()); Runtime.warm then sends prime requests.
        const { startupTimeout } = this.config.options;
        await within(Promise.all(this.ready.map((instance) => instance.prime())), startupTimeout);
        return;
      }
      const room = Math.min(target - this.ready.length - this.starting, MAX_PARALLEL_STARTS - this.starting);
      for (let i = 0; i < room; i++) this.startInstance();
      // An abort ends the wait, not the starts: they finish and serve later calls.
      let waiter: ((outcome: unknown) => void) | undefined;
      const outcome = new Promise<unknown>((resolve) => {
        waiter = resolve;
        this.startWaiters.add(resolve);
      });
      let failure: unknown;
      try {
        failure = await untilAborted(outcome, signal);
      } finally {
        if (waiter) this.startWaiters.delete(waiter);
      }
      if (failure !== undefined) throw failure;
    }
  }

  /**
   * Starts containers for the demand: queued calls beyond what starting ones will take, and
   * minInstances. Containers that are draining or being stopped still count toward maxInstances, plus
   * room for one replacement while any of them is on its way out: a drain around one stuck call does
   * not block an artifact whose limit is 1, and containers that refuse every call and ignore SIGTERM
   * cannot multiply (at most maxInstances + 1 exist at once).
   */
  private scale(): void {
    if (this.closed) return;
    const { maxInstances, minInstances, maxConcurrency } = this.config.options;
    const live = this.ready.length + this.starting;
    const retiring = this.instances.size - live;
    let wanted = this.activated ? minInstances - live : 0;
    const uncovered = this.queue.length - this.starting * maxConcurrency;
    if (uncovered > 0) wanted = Math.max(wanted, Math.ceil(uncovered / maxConcurrency));
    const limit = maxInstances + (retiring > 0 ? 1 : 0) - live - retiring;
    const room = Math.min(wanted, limit, MAX_PARALLEL_STARTS - this.starting);
    for (let i = 0; i < room; i++) this.startInstance();
  }

  private startInstance(): void {
    this.starting++;
    this.coldStarts++;
    // A standby container, created already, starts sooner than a new one.
    const instance = this.standby.take() ?? this.newInstance();
    this.instances.add(instance);
    instance.start(this.ensureImage()).catch((error: unknown) => this.onStartFailed(error));
  }

  private newInstance(): Instance {
    const { engine, options, digest, labels, folderPrefix, now, budget, logs } = this.config;
    return new Instance(
      {
        engine,
        options,
        digest,
        labels,
        name: this.config.nextName(),
        folderPrefix,
        now,
        budget,
        logs,
        ref: this.ref,
      },
      this,
    );
  }

  /** Tops the standby up while the artifact is in use and maxInstances has room for it. */
  private refillStandby(now = this.config.now()): void {
    if (this.closed || !this.activated || now - this.lastUsed >= this.config.options.idleTimeout) return;
    this.standby.fill(this.config.options.maxInstances - this.instances.size - this.standby.count);
  }

  private ensureImage(): Promise<void> {
    if (!this.image) {
      const { engine, digest, options } = this.config;
      const path = this.path;
      const closing = this.closeAbort.signal;
      // Each engine question is bounded by startupTimeout (the engine ignoring its signal included);
      // the load is bounded by the engine's own progress check (DockerEngine: 2 min without a byte).
      const ask = <T>(run: (signal: AbortSignal) => Promise<T>, action: string) =>
        engineCall(run, options.startupTimeout, action, closing);
      const image = (async () => {
        const inspect = `say whether it holds image ${digest}`;
        // The orphan sweep and the image question go out together (cold start: each is an engine
        // round trip the first container would otherwise wait for in turn).
        const prepared = ask((signal) => engine.ping(signal), "answer a ping").then(() =>
          this.config.prepare(),
        );
        const held = ask((signal) => engine.hasImage(digest, signal), inspect);
        held.catch(() => undefined);
        await prepared;
        if (await held) {
          // The shared last-used record, which another runtime's retention reads, is refreshed once
          // the first container is ready (onReady): by then that container protects the image, and
          // the request does not compete with the create and start a cold start waits for (on the
          // containerd store a tag and a create contend). Best effort, bounded.
          const mark = engine.markImageUsed?.bind(engine);
          if (mark)
            this.markUsed = () =>
              void ask((signal) => mark(digest, signal), "record an image's use").catch(() => undefined);
          return;
        }
        this.imageLoads++;
        // Loaded under the engine's own reference for this digest, checked complete before it is named.
        const ref = this.ref;
        const publish = (message: Omit<ImageLoadMessage, "artifact">) => {
          if (channels.imageLoad.hasSubscribers) channels.imageLoad.publish({ artifact: ref, ...message });
        };
        const load = {
          signal: closing,
          maxUnpackedBytes: options.maxUnpackedBytes,
          onProgress: (sentBytes: number, totalBytes: number) =>
            publish({ phase: "progress", sentBytes, totalBytes }),
        };
        publish({ phase: "start", sentBytes: 0, totalBytes: 0 });
        try {
          await untilAborted(engine.loadImage(path, digest, load), closing);
        } catch (error) {
          publish({ phase: "failed", sentBytes: 0, totalBytes: 0, error });
          throw error;
        }
        publish({ phase: "done", sentBytes: 0, totalBytes: 0 });
        if (!(await ask((signal) => engine.hasImage(digest, signal), inspect))) {
          throw new ArtifactError(path, `the engine loaded ${path} but holds no image for ${digest}`);
        }
      })();
      this.image = image;
      image.catch(() => {
        if (this.image === image) this.image = undefined;
      });
    }
    return this.image;
  }

  private onStartFailed(error: unknown): void {
    this.starting--;
    this.lastStartFailure = this.config.now();
    // The next start checks the engine for the image again: it may have been removed under the
    // pool (`docker image rm`, a prune), and a pool that trusted its first answer would fail forever.
    this.image = undefined;
    this.notifyStart(error);
    // With nothing ready or coming, the calls waiting for this container get its failure.
    if (this.ready.length === 0 && this.starting === 0) {
      for (const call of this.queue.drain()) call.fail(error);
    }
  }

  private notifyStart(outcome: unknown): void {
    const waiters = [...this.startWaiters];
    this.startWaiters.clear();
    for (const waiter of waiters) waiter(outcome);
  }

  onReady(instance: Instance): void {
    this.starting--;
    if (this.closed) {
      void instance.stop();
      return;
    }
    this.ready.push(instance);
    while (this.queue.length > 0 && instance.inFlight < instance.capacity) {
      instance.send(this.queue.shift() as Call);
    }
    this.markUsed?.();
    this.markUsed = undefined;
    this.refillStandby();
    this.notifyStart(undefined);
    this.scale();
  }

  onFinal(instance: Instance, call: Call): void {
    if (!call.prime) {
      instance.callsServed++;
      this.latency.record(performance.now() - call.createdAt);
    }
    const { maxCallsPerContainer } = this.config.options;
    // Recycled after so many calls (a leaky app's memory, say): it finishes what it holds.
    if (maxCallsPerContainer > 0 && instance.callsServed >= maxCallsPerContainer) instance.drain();
    if (instance.state === "ready") {
      // The freed slot takes the next queued call (a call the container cannot take fails and the next one is tried).
      while (this.queue.length > 0 && instance.inFlight < instance.capacity) {
        instance.send(this.queue.shift() as Call);
      }
    }
    instance.afterFinal();
  }

  onRefused(_instance: Instance, call: Call): void {
    // The refusing instance is draining already, so this goes to another container or the queue.
    call.stage = PENDING;
    call.holder = undefined;
    this.submit(call);
  }

  onRetired(instance: Instance): void {
    const index = this.ready.indexOf(instance);
    if (index >= 0) this.ready.splice(index, 1);
    if (this.queue.length > 0) this.scale();
  }

  onGone(instance: Instance): void {
    // A standby never taken is the standby's own (pool/standby.ts).
    if (!this.instances.delete(instance)) return;
    const index = this.ready.indexOf(instance);
    if (index >= 0) this.ready.splice(index, 1);
    this.lastUsed = this.config.now();
    // A container that served and is now gone frees a place under maxInstances for waiting calls.
    if (instance.hello !== undefined && this.queue.length > 0) this.scale();
    this.refillStandby();
    // No scale() for a failed start: it must not start the next one from its own clean-up. That would loop for as long
    // as starts fail (the engine is down, say): each failure starting another before it is
    // counted, so the queued calls never learn that nothing can start.
  }

  /**
   * Stops containers idle for idleTimeout beyond minInstances, recycles those older than
   * maxContainerAge, pings those idle for pingInterval (retiring one that stopped answering), and
   * tops the pool up to minInstances.
   */
  reap(now: number): void {
    const { idleTimeout, minInstances, maxContainerAge, pingInterval } = this.config.options;
    for (const instance of [...this.ready]) {
      if (maxContainerAge > 0 && now - instance.readyAt >= maxContainerAge) {
        instance.drain();
      } else if (
        pingInterval > 0 &&
        instance.inFlight === 0 &&
        now - instance.idleSince >= pingInterval &&
        now - instance.lastPing >= pingInterval
      ) {
        void instance.checkAlive(Math.min(10_000, Math.max(1_000, pingInterval)));
      }
    }
    let surplus = this.ready.length - (this.activated ? minInstances : 0);
    for (const instance of [...this.ready]) {
      if (surplus <= 0) break;
      if (instance.inFlight === 0 && now - instance.idleSince >= idleTimeout) {
        instance.drain();
        surplus--;
      }
    }
    // An artifact with no container and no call for idleTimeout keeps no standby either.
    if (this.instances.size === 0 && now - this.lastUsed >= idleTimeout) void this.standby.clear();
    else this.refillStandby(now);
    const backoff = Math.max(START_RETRY_BACKOFF_MS, this.config.options.startupTimeout);
    if (
      this.activated &&
      this.ready.length + this.starting < minInstances &&
      now - this.lastStartFailure >= backoff
    ) {
      this.scale();
    }
  }

  /**
   * Stops this artifact's containers gracefully (they take no new calls, finish what they hold, then
   * SIGTERM), and resolves once they are gone. Calls made meanwhile start new containers.
   */
  async drain(): Promise<void> {
    const draining = [...this.ready];
    for (const instance of draining) instance.drain();
    await Promise.all(draining.map((instance) => instance.gone));
  }

  /** Rejects what waits, aborts starts, lets calls in flight finish (within shutdownTimeout), stops every container. */
  async close(): Promise<void> {
    this.closed = true;
    this.closeAbort.abort(new RuntimeClosedError());
    for (const call of this.queue.drain())
      call.fail(new RuntimeClosedError("the runtime closed before the request was sent"));
    this.notifyStart(new RuntimeClosedError());
    const instances = [...this.instances];
    const standby = this.standby.close();
    await Promise.all(instances.map((instance) => instance.shutdown()));
    await standby;
    await Promise.all(instances.map((instance) => instance.gone));
  }

  stats(): ArtifactStats {
    const instances: Record<InstanceState, number> = {
      starting: 0,
      ready: 0,
      draining: 0,
      stopping: 0,
      gone: 0,
    };
    let inFlight = 0;
    for (const instance of this.instances) {
      instances[instance.state]++;
      inFlight += instance.inFlight;
    }
    const now = this.config.now();
    return {
      digest: this.config.digest,
      path: this.path,
      instances,
      inFlight,
      queued: this.queue.length,
      coldStarts: this.coldStarts,
      imageLoads: this.imageLoads,
      containers: [...this.instances].map((instance) => instance.info(now)),
      latency: this.latency.stats(),
      ...(this.config.alias === undefined ? {} : { alias: this.config.alias }),
      settings: {
        maxInstances: this.config.options.maxInstances,
        maxConcurrency: this.config.options.maxConcurrency,
        minInstances: this.config.options.minInstances,
        memory: this.config.options.container.memory,
        nanoCpus: this.config.options.container.nanoCpus,
      },
    };
  }
}
