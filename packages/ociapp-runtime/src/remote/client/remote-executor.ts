import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { ArtifactCache } from "../../artifacts/artifact-cache.js";
import { InvalidRequestError, OptionsError, RuntimeClosedError } from "../../errors.js";
import {
  type DrainOptions,
  type ExecuteOptions,
  type Executor,
  type ExecutorStats,
  isDigest,
  type WarmOptions,
} from "../../executor.js";
import type { ArtifactStats } from "../../pool/pool.js";
import { untilAborted } from "../../util/bounded.js";
import { AgentError } from "../errors.js";
import { artifactPath, HEADERS, ROUTES } from "../http/wire.js";
import { type AgentLink, type Exchange, NeverSent } from "./agent-link.js";
import { AgentDirectory, type AgentStats } from "./directory.js";
import { answerError, type DispatchContext, send } from "./dispatch.js";

export interface RemoteExecutorOptions {
  /**
   * Agent addresses, `https://host:port` (`http://` only for a loopback agent started with
   * --insecure-loopback). A host name that resolves to several addresses gives one agent per address
   * (TLS still verifies the name), resolved again every `resolveInterval`.
   */
  agents: string[];
  /** The bearer token (RFC 6750) sent to every agent. */
  token: string;
  /** PEM of the CA that signs the agents' certificates. Default: Node's CAs. */
  ca?: string | Buffer;
  /** PEM client certificate and key for agents that require mutual TLS. */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** ms a call may take when it has no `timeout` of its own; the agent's own requestTimeout also applies. Default 30 000. */
  requestTimeout?: number;
  /** ms added to a call's timeout before the client gives up on an agent that does not answer. Default 5 000. */
  deadlineMargin?: number;
  /**
   * ms an artifact's upload, or a `warm()` (where the agent may pull, load and start the artifact),
   * may take before the client gives up on the agent (RequestTimeoutError). Default 600 000.
   */
  loadTimeout?: number;
  /** Calls outstanding per agent; when every agent has this many, execute() rejects with QueueFullError. Default 1 024. */
  maxOutstanding?: number;
  /** ms to connect (TCP and TLS). Default 10 000. */
  connectTimeout?: number;
  /** ms between health checks (GET /v1/status). Default 5 000. */
  healthInterval?: number;
  /** ms between HTTP/2 PINGs while calls are in flight, and ms one may take. Defaults 5 000 and 10 000. */
  keepaliveInterval?: number;
  keepaliveTimeout?: number;
  /** ms between DNS resolutions of agent names. Default 30 000. */
  resolveInterval?: number;
  /** Largest answer read, bytes. Default 17 MiB (a 16 MiB payload and its JSON). */
  maxResponseBytes?: number;
}

const MiB = 1024 * 1024;

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
    throw new OptionsError(`RemoteExecutor option ${name} must be a positive integer (got ${String(value)})`);
  }
  return value;
}

/**
 * The client side of remote execution: an Executor whose calls run on agents (`ociapp-runtime
 * serve`) over HTTP/2 and TLS. Each call goes to one agent, picked by artifact affinity (an agent
 * that has served the digest or reports ready containers for it) and then by fewest calls
 * outstanding. A call is sent again to another agent only when it certainly never ran: the
 * connection could not be made, the stream was refused (GOAWAY), or the agent answered 503 while
 * draining; a connection lost after the request went out gives CallLostError, never a second run.
 * An abort resets the HTTP/2 stream (RST_STREAM CANCEL), which aborts the call on the agent and
 * sends the container a cancel frame. There is no client queue: when every agent has
 * `maxOutstanding` calls, execute() rejects with QueueFullError.
 */
export class RemoteExecutor implements Executor {
  private readonly directory: AgentDirectory;
  private readonly cache: ArtifactCache;
  private readonly requestTimeout: number;
  private readonly deadlineMargin: number;
  private readonly loadTimeout: number;
  private readonly dispatch: DispatchContext;
  private readonly authorization: string;
  private readonly uploads = new Map<string, Promise<void>>();
  /** Calls and warms not yet settled, and close()'s wait for the count to reach 0. */
  private inFlight = 0;
  private settledAll: (() => void) | undefined;
  private closing: Promise<void> | undefined;

  constructor(options: RemoteExecutorOptions) {
    if (typeof options !== "object" || options === null)
      throw new OptionsError("RemoteExecutor options must be an object");
    if (!Array.isArray(options.agents) || options.agents.length === 0) {
      throw new OptionsError("RemoteExecutor option agents must list at least one agent address");
    }
    if (typeof options.token !== "string" || !/^[\x21-\x7e]{1,4096}$/.test(options.token)) {
      throw new OptionsError("RemoteExecutor option token must be a non-empty printable ASCII string");
    }
    this.authorization = `Bearer ${options.token}`;
    this.requestTimeout = positive("requestTimeout", options.requestTimeout, 30_000);
    this.deadlineMargin = positive("deadlineMargin", options.deadlineMargin, 5_000);
    this.loadTimeout = positive("loadTimeout", options.loadTimeout, 600_000);
    const link = {
      connectTimeout: positive("connectTimeout", options.connectTimeout, 10_000),
      keepaliveInterval: positive("keepaliveInterval", options.keepaliveInterval, 5_000),
      keepaliveTimeout: positive("keepaliveTimeout", options.keepaliveTimeout, 10_000),
      maxResponseBytes: positive("maxResponseBytes", options.maxResponseBytes, 17 * MiB),
      ...(options.ca === undefined ? {} : { ca: options.ca }),
      ...(options.cert === undefined ? {} : { cert: options.cert }),
      ...(options.key === undefined ? {} : { key: options.key }),
    };
    this.directory = new AgentDirectory(options.agents, link, {
      healthInterval: positive("healthInterval", options.healthInterval, 5_000),
      resolveInterval: positive("resolveInterval", options.resolveInterval, 30_000),
      check: (agent) => this.check(agent),
    });
    this.dispatch = {
      directory: this.directory,
      maxOutstanding: positive("maxOutstanding", options.maxOutstanding, 1024),
      upload: (agent, digest, path, signal) => this.upload(agent, digest, path, signal),
    };
    this.cache = new ArtifactCache({
      readIndex: async (path, readOptions) =>
        (await import("ociapp/artifact")).readArtifactIndex(path, readOptions),
    });
  }

  execute<Res = unknown>(artifact: string, request: unknown, options?: ExecuteOptions): Promise<Res> {
    if (this.closing) return Promise.reject(new RuntimeClosedError());
    let body: Buffer;
    let settings: string | undefined;
    try {
      if (typeof artifact !== "string" || artifact === "") {
        throw new OptionsError(`execute() artifact must be a path or a digest (got ${typeof artifact})`);
      }
      if (request === undefined)
        throw new InvalidRequestError("the request payload is undefined; send null or a value");
      body = Buffer.from(JSON.stringify(request));
      const timeout = options?.timeout;
      if (timeout !== undefined) {
        if (!Number.isInteger(timeout) || timeout < 1) {
          throw new OptionsError(`execute() option timeout must be an integer >= 1 (got ${String(timeout)})`);
        }
        settings = JSON.stringify({ timeout });
      }
    } catch (error) {
      if (error instanceof TypeError)
        return Promise.reject(
          new InvalidRequestError(`the request payload is not JSON-serialisable: ${error.message}`),
        );
      return Promise.reject(error);
    }
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const timeoutMs = options?.timeout ?? this.requestTimeout;
    const headers: Exchange["headers"] = {
      authorization: this.authorization,
      "content-type": "application/json",
      ...(settings === undefined ? {} : { [HEADERS.settings]: settings }),
    };
    const run = (digest: string, path: string | undefined): Promise<Res> => {
      const exchange: Exchange = {
        method: "POST",
        path: artifactPath(digest, "execute"),
        headers,
        body,
        deadline: timeoutMs + this.deadlineMargin,
        timeoutMs,
        ...(signal === undefined ? {} : { signal }),
      };
      return send(this.dispatch, digest, path, exchange).then(({ answer, agent }) => {
        agent.warm.add(digest);
        return parseAnswer(answer.body, agent) as Res;
      });
    };
    // A digest needs no lookup: no async step of withArtifact's in every call's path.
    return this.track(
      isDigest(artifact) ? run(artifact, undefined) : this.withArtifact(artifact, signal, run),
    );
  }

  async warm(artifact: string, options?: WarmOptions): Promise<void> {
    if (this.closing) throw new RuntimeClosedError();
    const signal = options?.signal;
    await this.track(
      this.withArtifact(artifact, signal, async (digest, path) => {
        const exchange: Exchange = {
          method: "POST",
          path: artifactPath(digest, "warm"),
          headers: { authorization: this.authorization },
          deadline: this.loadTimeout,
          ...(signal === undefined ? {} : { signal }),
        };
        const { agent } = await send(this.dispatch, digest, path, exchange);
        agent.warm.add(digest);
      }),
    );
  }

  /** Drains the artifact on every agent (their tokens need the `drain` scope). */
  async drain(artifact: string, options?: DrainOptions): Promise<void> {
    if (this.closing) throw new RuntimeClosedError();
    const signal = options?.signal;
    await this.withArtifact(artifact, signal, async (digest) => {
      const results = await Promise.allSettled(
        this.directory.links().map(async (agent) => {
          const answer = await agent.request({
            method: "POST",
            path: artifactPath(digest, "drain"),
            headers: { authorization: this.authorization },
            deadline: this.loadTimeout,
            ...(signal === undefined ? {} : { signal }),
          });
          agent.warm.delete(digest);
          if (answer.status !== 200) throw answerError(answer, agent, digest);
        }),
      );
      const failed = results.find(
        (result): result is PromiseRejectedResult =>
          result.status === "rejected" && !(result.reason instanceof NeverSent),
      );
      if (failed) throw failed.reason;
    });
  }

  stats(): ExecutorStats & { agents: AgentStats[] } {
    const artifacts = new Map<string, ArtifactStats>();
    for (const report of this.directory.reports()) {
      for (const entry of report.artifacts) {
        const known = artifacts.get(entry.digest) ?? {
          digest: entry.digest,
          path: entry.digest,
          instances: { starting: 0, ready: 0, draining: 0, stopping: 0, gone: 0 },
          inFlight: 0,
          queued: 0,
          coldStarts: 0,
          imageLoads: 0,
          // Per container and latency figures stay with each agent (its /v1/status, /metrics).
          containers: [],
          latency: { count: 0, p50Ms: 0, p90Ms: 0, p99Ms: 0 },
          settings: { maxInstances: 0, maxConcurrency: 0, minInstances: 0, memory: 0, nanoCpus: 0 },
        };
        known.instances.ready += entry.ready;
        known.inFlight += entry.inFlight;
        known.queued += entry.queued;
        artifacts.set(entry.digest, known);
      }
    }
    return {
      closed: this.closing !== undefined,
      artifacts: [...artifacts.values()],
      agents: this.directory.stats(),
    };
  }

  /** Rejects new calls with RuntimeClosedError, waits for calls in flight (each bounded by its deadline), then closes every connection. */
  close(): Promise<void> {
    if (!this.closing) {
      this.closing = (async () => {
        if (this.inFlight > 0) await new Promise<void>((resolve) => (this.settledAll = resolve));
        this.directory.close();
      })();
    }
    return this.closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Counts the call until it settles: the promise handed back is this one step on `promise`. */
  private track<T>(promise: Promise<T>): Promise<T> {
    this.inFlight++;
    return promise.then(
      (value) => {
        this.untrack();
        return value;
      },
      (error: unknown) => {
        this.untrack();
        throw error;
      },
    );
  }

  private untrack(): void {
    if (--this.inFlight === 0 && this.settledAll !== undefined) {
      this.settledAll();
      this.settledAll = undefined;
    }
  }

  /** Resolves a path to its digest (read from the file, cached per file identity); a digest is used as it is. */
  private async withArtifact<T>(
    artifact: string,
    signal: AbortSignal | undefined,
    run: (digest: string, path: string | undefined) => Promise<T>,
  ): Promise<T> {
    if (isDigest(artifact)) return run(artifact, undefined);
    const digest = this.cache.lookup(artifact) ?? (await this.cache.resolve(artifact));
    signal?.throwIfAborted();
    return run(digest, artifact);
  }

  /**
   * Uploads the file once per agent and digest: concurrent callers share the upload, which therefore
   * follows no caller's signal (an abort ends only that caller's wait; the agent bounds the upload by
   * its size limit and stall timeout).
   */
  private upload(
    agent: AgentLink,
    digest: string,
    path: string,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const key = `${agent.address}\n${digest}`;
    let pending = this.uploads.get(key);
    if (!pending) {
      pending = (async () => {
        const { size } = await stat(path);
        const answer = await agent.request({
          method: "PUT",
          path: artifactPath(digest),
          headers: {
            authorization: this.authorization,
            "content-type": "application/vnd.oci.image.layout.v1+tar",
            "content-length": size,
          },
          body: createReadStream(path),
          deadline: this.loadTimeout,
        });
        if (answer.status !== 200 && answer.status !== 201) throw answerError(answer, agent, digest);
      })();
      this.uploads.set(key, pending);
      const forget = () => this.uploads.delete(key);
      pending.then(forget, forget);
    }
    return untilAborted(pending, signal);
  }

  /** One health check: GET /v1/status; its report feeds affinity and stats(). */
  private async check(agent: AgentLink): Promise<StatusReport> {
    const answer = await agent.request({
      method: "GET",
      path: ROUTES.status,
      headers: { authorization: this.authorization },
      deadline: 10_000,
      background: true,
    });
    if (answer.status !== 200) throw answerError(answer, agent, "");
    return parseAnswer(answer.body, agent) as StatusReport;
  }
}

/** A success's JSON body; AgentError when it is not JSON (a fault in the agent or what answered). */
function parseAnswer(body: Buffer, agent: AgentLink): unknown {
  try {
    return JSON.parse(body.toString("utf8"));
  } catch (error) {
    throw new AgentError(
      `agent ${agent.url} answered 200 with a body that is not JSON (${(error as Error).message})`,
    );
  }
}

export interface StatusReport {
  agent: string;
  draining: boolean;
  inFlight: number;
  artifacts: { digest: string; ready: number; inFlight: number; queued: number }[];
}
