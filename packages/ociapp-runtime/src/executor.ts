import type { ArtifactStats } from "./pool/pool.js";

/**
 * How an artifact is named: a path to a `.ociapp` file on the machine that reads it, or the
 * artifact's identity, its image manifest digest `sha256:<64 lowercase hex>` (the digest
 * `index.json` points at; OCI image spec, descriptor digests). Remote calls name artifacts by
 * digest; a RemoteExecutor given a path computes the digest itself and uploads the file when the
 * agent lacks it.
 */
export type ArtifactName = string;

/** `sha256:` and 64 lowercase hex digits: the only digest form artifacts are named by. */
export const DIGEST_PATTERN = /^sha256:[a-f0-9]{64}$/;

/** True when `name` is a manifest digest (`sha256:<64 hex>`) rather than a path. */
export function isDigest(name: string): boolean {
  return DIGEST_PATTERN.test(name);
}

/**
 * Options of one `execute()` call. This object is passed through unchanged from the caller to the
 * executor that runs the call (over the network for a RemoteExecutor), so per-call settings added
 * later (issue 14: per-artifact settings) are fields here.
 */
export interface ExecuteOptions {
  /** Rejects the call with the signal's reason when it aborts; a running request gets a cancel frame. */
  signal?: AbortSignal;
  /** Milliseconds for this call (queue time included) instead of the executor's requestTimeout. */
  timeout?: number;
}

/** Options of `warm()`. */
export interface WarmOptions {
  /** Ends the wait (not the starts) with the signal's reason. */
  signal?: AbortSignal;
}

/** Options of `drain()`. */
export interface DrainOptions {
  /** Ends the wait with the signal's reason; the drain itself goes on. */
  signal?: AbortSignal;
}

/** What every executor reports: whether it is closed, and per artifact what it holds. */
export interface ExecutorStats {
  closed: boolean;
  /** Per artifact known to this executor (for a RemoteExecutor: the agents' last reports, summed). */
  artifacts: ArtifactStats[];
}

/**
 * Everything a service uses to run artifacts, wherever the containers are. `Runtime` (also exported
 * as `LocalExecutor`) runs them on this machine's engine; `RemoteExecutor` sends each call to an
 * agent (`ociapp-runtime serve`) on another host. Code written against `Executor` runs unchanged on
 * either, and both reject with the same error classes carrying the same `code` strings.
 */
export interface Executor extends AsyncDisposable {
  /**
   * Runs `request` on a container of `artifact` and resolves with the app's response. Rejects with an
   * `OciappRuntimeError` subclass (see the README's Errors table) or the signal's reason.
   */
  execute<Res = unknown>(artifact: ArtifactName, request: unknown, options?: ExecuteOptions): Promise<Res>;
  /** Makes the artifact's image available and starts `max(1, minInstances)` containers ahead of traffic. */
  warm(artifact: ArtifactName, options?: WarmOptions): Promise<void>;
  /**
   * Stops the artifact's containers gracefully: they take no new calls, the calls they run finish
   * (within shutdownTimeout), then they stop. Calls waiting in its queue are rejected with
   * RuntimeClosedError (they never ran). Later calls start new containers. Resolves once they are gone.
   */
  drain(artifact: ArtifactName, options?: DrainOptions): Promise<void>;
  /** A snapshot of what the executor holds now (synchronous: no I/O). */
  stats(): ExecutorStats;
  /** Rejects new calls with RuntimeClosedError, lets calls in flight finish, releases everything. Idempotent. */
  close(): Promise<void>;
}
