import { randomUUID } from "node:crypto";
import { encodeFrame } from "ociapp/protocol";
import { ArtifactCache, readArtifactIndex } from "./artifacts/artifact-cache.js";
import { effectiveOptions } from "./artifacts/artifact-settings.js";
import { DockerEngine } from "./engines/docker/docker-engine.js";
import { type Engine, isEngine } from "./engines/engine.js";
import { ArtifactError, InvalidRequestError, OptionsError, RuntimeClosedError } from "./errors.js";
import { type DrainOptions, type Executor, isDigest, type WarmOptions } from "./executor.js";
import { formatOwner, ownIdentity } from "./host/owner.js";
import { HostPreparation } from "./host/prepare.js";
import { ImageRetention, type ImageRetentionStats } from "./images/retention-runner.js";
import { seamsOf } from "./internal/seams.js";
import { LABELS } from "./labels.js";
import { type CallCreatedMessage, channels } from "./observability/channels.js";
import { LogDispatcher } from "./observability/logs.js";
import { attachTelemetry, resolveTelemetry, type TelemetryHandle } from "./observability/telemetry.js";
import {
  type CallOptions,
  type ResolvedOptions,
  type RuntimeOptions,
  resolveCallTimeout,
  resolveOptions,
} from "./options.js";
import { Call, CallDeadlines } from "./pool/call.js";
import { Pool } from "./pool/pool.js";
import { sendPrimeRequests } from "./pool/prime.js";
import { Reaper } from "./pool/reaper.js";
import { encodeRequest } from "./pool/request-frame.js";
import { ReceiveBudget } from "./protocol/receive-budget.js";
import type { RuntimeStats } from "./runtime-stats.js";
import { untilAborted } from "./util/bounded.js";

export { LABELS } from "./labels.js";

export type { RuntimeStats } from "./runtime-stats.js";

/**
 * Call ids come from one counter per process, not per Runtime: the lifecycle events name a call by
 * its id alone, so a subscriber that serves several Runtimes (telemetry) must never see two alike.
 */
let callIds = 0;

/** warm()'s prime requests pass this as their request: module-private, so no caller can. */
const PRIME_REQUEST: unknown = Object.freeze({});

/**
 * Runs .ociapp artifacts: `execute(path, request)` answers from a warm container of that artifact,
 * starting one when needed. See the package README for the model.
 */
export class Runtime implements Executor {
  /** The value of the dev.ociapp.runtime label on this runtime's containers. */
  readonly id = randomUUID();
  readonly engine: Engine;
  private readonly options: ResolvedOptions;
  private readonly cache: ArtifactCache;
  /** Pools by digest, and by "alias:<name>" for calls through an alias. */
  private readonly pools = new Map<string, Pool>();
  /** The aliases of the artifacts option: name → the path or digest it names. */
  private readonly aliases = new Map<string, { name: string; path: string }>();
  private readonly reaper: Reaper;
  private readonly now: () => number;
  /** The clock is performance.now(): a call's createdAt is a reading of it (one clock read per call). */
  private readonly performanceClock: boolean;
  private readonly short: string;
  /** The logs sink behind its bounded queue, when the service gave one. */
  private readonly logs: LogDispatcher | undefined;
  /** Bytes of partly received frames, over every container of this runtime. */
  private readonly budget: ReceiveBudget;
  /** Timeouts of the calls made with requestTimeout: one list, one timer. */
  private readonly deadlines = new CallDeadlines();
  private containers = 0;
  private closing: Promise<void> | undefined;
  private readonly preparation: HostPreparation;
  private readonly retention: ImageRetention;
  /** When retention last asked which artifacts were used (the runtime's clock). */
  private usageCheckedAt: number;
  private retentionArmed = false;
  /** OpenTelemetry (observability/telemetry.ts): set while this runtime reports, detached at close. */
  private readonly telemetry: TelemetryHandle | undefined;

  constructor(options: RuntimeOptions = {}) {
    this.options = resolveOptions(options);
    const telemetry = resolveTelemetry(options.telemetry);
    for (const [name, settings] of this.options.artifacts) {
      const target = settings.target;
      if (target) this.aliases.set(name, { name, path: "path" in target ? target.path : target.digest });
    }
    const internals = seamsOf(options);
    if (options.engine !== undefined && !isEngine(options.engine)) {
      throw new OptionsError(
        "Runtime option engine must be an Engine such as new DockerEngine() (got a non-engine value)",
      );
    }
    this.engine = options.engine ?? new DockerEngine();
    this.now = internals.now ?? (() => performance.now());
    this.performanceClock = internals.now === undefined;
    this.cache = new ArtifactCache({
      readIndex: internals.readIndex ?? readArtifactIndex,
      now: this.now,
    });
    this.short = this.id.replaceAll("-", "").slice(0, 12);
    this.preparation = new HostPreparation(
      this.engine,
      {
        socketDir: this.options.socketDir,
        ociRuntime: this.options.container.runtime,
        startupTimeout: this.options.startupTimeout,
      },
      this.short,
    );
    this.budget = new ReceiveBudget(this.options.maxBufferedBytes);
    this.logs = options.logs ? new LogDispatcher(options.logs) : undefined;
    this.usageCheckedAt = this.now();
    this.retention = new ImageRetention(this.engine, this.options.images, () => this.imageUsage());
    this.reaper = new Reaper(this.options.reaperInterval, () => this.reap());
    this.reaper.start();
    // Last: a constructor that threw must not leave this runtime subscribed.
    this.telemetry = telemetry && attachTelemetry(this, telemetry);
  }

  /**
   * Sends `request` to a container of the artifact at `path` and resolves with the app's response.
   * Rejects with RemoteExecutionError when the app answered with an error, RequestTimeoutError,
   * the signal's reason, QueueFullError, WorkerExitedError, ProtocolError, InstanceStartupError,
   * ArtifactError, EngineUnavailableError or RuntimeClosedError.
   */
  execute<Res = unknown>(path: string, request: unknown, options?: CallOptions): Promise<Res> {
    if (this.closing) return Promise.reject(new RuntimeClosedError());
    let timeout: number;
    let frame: Buffer;
    let prime = false;
    const id = (++callIds).toString(36);
    try {
      if (typeof path !== "string" || path === "") {
        throw new OptionsError(`execute() path must be a non-empty string (got ${typeof path})`);
      }
      timeout =
        options === undefined
          ? this.options.requestTimeout
          : resolveCallTimeout(options, this.options.requestTimeout);
      if (request === undefined)
        throw new InvalidRequestError("the request payload is undefined; send null or a value");
      if (request === PRIME_REQUEST) {
        prime = true;
        frame = encodeFrame({ type: "prime", id });
      } else {
        // A subscriber (the OpenTelemetry integration) may give the call a trace context to carry.
        let trace: CallCreatedMessage["trace"];
        if (channels.callCreated.hasSubscribers) {
          const created: CallCreatedMessage = { id, runtimeId: this.id, artifact: path };
          channels.callCreated.publish(created);
          trace = created.trace;
        }
        frame = encodeRequest(id, request, this.options.maxFrameBytes, trace);
      }
    } catch (error) {
      return Promise.reject(error);
    }
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<Res>((resolve, reject) => {
      const call = new Call(
        id,
        frame,
        resolve as (value: unknown) => void,
        reject,
        signal,
        timeout,
        timeout === this.options.requestTimeout ? this.deadlines : undefined,
      );
      call.prime = prime;
      // An alias the service bound (artifacts option) names a path or a digest, and a pool of its own.
      const alias = this.aliases.get(path);
      const target = alias ? alias.path : path;
      const now = this.performanceClock ? call.createdAt : this.now();
      const digest = isDigest(target) ? this.knownDigest(target, call) : this.cache.lookup(target, now);
      if (digest === null) return;
      if (digest !== undefined) {
        this.poolFor(digest, isDigest(target) ? this.pathOf(digest, target) : target, alias?.name).submit(
          call,
          now,
        );
        return;
      }
      this.cache.resolve(target).then(
        (resolved) => {
          if (call.settled) return;
          if (this.closing) call.fail(new RuntimeClosedError());
          else this.poolFor(resolved, target, alias?.name).submit(call);
        },
        (error: unknown) => call.fail(error),
      );
    });
  }

  /**
   * warm()'s prime request (pool/prime.ts): execute()'s own path with a "prime" frame, which the app
   * answers without running execute. It is never queued (see Pool.submit).
   */
  private primeCall(path: string): Promise<unknown> {
    return this.execute(path, PRIME_REQUEST);
  }

  /**
   * Loads the artifact's image when the engine lacks it and starts max(1, minInstances) containers,
   * then primes the request path on both sides (a prime ping to each container, then up to 2,000
   * prime requests, at most 500 ms; none runs the app's execute). An abort of `signal` rejects with
   * its reason at once; starts already under way go on and serve later calls.
   */
  async warm(path: string, options?: WarmOptions): Promise<void> {
    const signal = options?.signal;
    if (this.closing) throw new RuntimeClosedError();
    signal?.throwIfAborted();
    const alias = this.aliases.get(path);
    const target = alias ? alias.path : path;
    if (isDigest(target)) {
      if (!this.knownPath(target))
        throw new ArtifactError(target, `no artifact with digest ${target} is known here`);
      return this.poolFor(target, this.pathOf(target, target), alias?.name).warm(signal);
    }
    const digest = await untilAborted(this.cache.resolve(target), signal);
    if (this.closing) throw new RuntimeClosedError();
    await this.poolFor(digest, target, alias?.name).warm(signal);
    // Both sides' request path, run until V8 has optimised it (bounded; a failure leaves it as primed
    // as it got).
    await untilAborted(
      sendPrimeRequests(() => this.primeCall(path)),
      signal,
    ).catch(() => undefined);
    // A failed prime leaves the path as primed as it got; an abort is the caller's, as documented.
    signal?.throwIfAborted();
  }

  /**
   * Stops the containers of one artifact (a path, or its manifest digest "sha256:..."; Executor.drain)
   * gracefully: they take no new calls, finish what they hold, then stop. Resolves once they are gone
   * (an abort of `signal` ends only the wait); calls made meanwhile start new containers, and calls
   * waiting in the artifact's queue go to them. An artifact with no containers resolves at once.
   */
  async drain(artifact: string, options?: DrainOptions): Promise<void> {
    const signal = options?.signal;
    signal?.throwIfAborted();
    if (typeof artifact !== "string" || artifact === "") {
      throw new OptionsError(`drain() artifact must be a path or a manifest digest (got ${typeof artifact})`);
    }
    // An alias drains its own pool; a path or a digest drains every pool of that artifact.
    const alias = this.aliases.get(artifact);
    if (alias) {
      await untilAborted(this.pools.get(`alias:${alias.name}`)?.drain() ?? Promise.resolve(), signal);
      return;
    }
    const digest = isDigest(artifact) ? artifact : await untilAborted(this.cache.resolve(artifact), signal);
    const pools = [...this.pools.values()].filter((pool) => pool.digest === digest);
    await untilAborted(
      Promise.all(pools.map((pool) => pool.drain())).then(() => undefined),
      signal,
    );
  }

  /** Per artifact: instances by state, in flight, queued, cold starts, image loads. */
  stats(): RuntimeStats {
    return {
      runtimeId: this.id,
      closed: this.closing !== undefined,
      logs: { ...(this.logs?.stats ?? { delivered: 0, dropped: 0, sinkErrors: 0 }) },
      receiveBuffer: {
        bytes: this.budget.held,
        peakBytes: this.budget.peak,
        limit: this.budget.maxBytes,
        pausedConnections: this.budget.paused,
      },
      artifacts: [...this.pools.values()].map((pool) => pool.stats()),
      images: { ...this.retention.stats },
    };
  }

  /**
   * Runs an image retention pass now (see the README's Images section): refreshes the last-used
   * record of the artifacts this runtime used, then removes runtime-owned images by the `images`
   * options. Resolves with the retention stats; a failed pass is in `lastError`, never thrown.
   * The reaper runs the same passes at most once per `images.interval` once the runtime has had a
   * call (a Runtime never reaches the engine before its first call).
   */
  async pruneImages(): Promise<ImageRetentionStats> {
    if (this.closing) throw new RuntimeClosedError();
    return this.retention.runNow();
  }

  /**
   * Rejects new and queued calls with RuntimeClosedError, lets calls in flight finish within
   * shutdownTimeout (SIGTERM, then SIGKILL), removes every container and socket folder. Idempotent.
   */
  close(): Promise<void> {
    if (!this.closing) {
      this.reaper.stop();
      const retention = this.retention.close();
      this.closing = Promise.all([...[...this.pools.values()].map((pool) => pool.close()), retention]).then(
        async () => {
          await this.preparation.release();
        },
      );
      // Its calls have all settled: the process-wide subscribers go once the last runtime has closed.
      if (this.telemetry) this.closing = this.closing.finally(() => this.telemetry?.detach());
    }
    return this.closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** A path this runtime ran the digest from (the newest), if any. */
  private knownPath(digest: string): string | undefined {
    for (const pool of this.pools.values()) if (pool.digest === digest) return pool.path;
    return undefined;
  }

  private pathOf(digest: string, fallback: string): string {
    return this.knownPath(digest) ?? fallback;
  }

  /**
   * A digest names an artifact this runtime has already resolved from a path (a pool knows its
   * file); any other digest fails the call with ArtifactError and gives null.
   */
  private knownDigest(digest: string, call: Call): string | null {
    if (this.knownPath(digest) !== undefined) return digest;
    call.fail(
      new ArtifactError(digest, `no artifact with digest ${digest} is known here; name it by its path first`),
    );
    return null;
  }

  /**
   * The pool for an artifact: one per digest, and one per alias (its settings are its own). Its options
   * are the Runtime's with the service's settings for the digest and the alias over them, lowered by
   * the app's own declared defaults.
   */
  private poolFor(digest: string, path: string, alias?: string): Pool {
    const key = alias === undefined ? digest : `alias:${alias}`;
    let pool = this.pools.get(key);
    if (pool !== undefined && pool.digest !== digest) {
      // The alias's file was rebuilt: its old pool is forgotten (it drains by itself when idle).
      this.pools.delete(key);
      pool = undefined;
    }
    if (pool === undefined) {
      const options = effectiveOptions(
        this.options,
        [
          this.options.artifacts.get(digest),
          alias === undefined ? undefined : this.options.artifacts.get(alias),
        ],
        this.cache.defaultsOf(digest),
      );
      pool = new Pool(
        {
          engine: this.engine,
          options,
          digest,
          labels: {
            [LABELS.managed]: "true",
            [LABELS.runtime]: this.id,
            [LABELS.artifact]: digest,
            [LABELS.owner]: formatOwner(ownIdentity()),
          },
          nextName: () => `ociapp-${this.short}-${++this.containers}`,
          folderPrefix: `${this.short}-`,
          budget: this.budget,
          ...(alias === undefined ? {} : { alias }),
          logs: this.logs,
          prepare: () => this.preparation.run(),
          now: this.now,
        },
        path,
      );
      this.pools.set(key, pool);
    } else if (pool.path !== path) {
      pool.path = path;
    }
    return pool;
  }

  private reap(): void {
    const now = this.now();
    for (const [key, pool] of this.pools) {
      pool.reap(now);
      // A pool with nothing in it for idleTimeout is forgotten: rebuilt artifacts do not pile up.
      if (pool.empty && now - pool.lastUsed >= this.options.idleTimeout) this.pools.delete(key);
    }
    // Only once a call or warm() reached the engine: a Runtime never contacts it before.
    if (this.pools.size > 0 || this.retentionArmed) {
      this.retentionArmed = true;
      this.retention.tick();
    }
  }

  /**
   * For image retention: the artifacts used since the last ask (their last-used records are
   * refreshed) and those with containers or calls now (never removed by this runtime).
   */
  private imageUsage(): { used: string[]; active: Set<string> } {
    const since = this.usageCheckedAt;
    this.usageCheckedAt = this.now();
    const used: string[] = [];
    const active = new Set<string>();
    for (const pool of this.pools.values()) {
      if (!pool.empty) active.add(pool.digest);
      if (!pool.empty || pool.lastUsed >= since) used.push(pool.digest);
    }
    return { used, active };
  }
}
