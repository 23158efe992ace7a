import { isAbsolute, resolve } from "node:path";
import { DEFAULT_MAX_DEPTH, DEFAULT_MAX_VALUES, MIN_LIMITS } from "ociapp/protocol";
import type { Engine } from "./engines/engine.js";

export type { ImageOptions } from "./images/image-options.js";

import {
  type ArtifactSettings,
  type ResolvedArtifactSettings,
  resolveArtifactSettings,
} from "./artifacts/artifact-settings.js";
import { OptionsError } from "./errors.js";
import type { LogSink } from "./observability/logs.js";
import type { TelemetryOptions } from "./observability/telemetry.js";
import type { ContainerOptions, ResolvedContainerOptions } from "./options/container.js";
import { resolveContainer } from "./options/container.js";
import { integer, show, stringRecord } from "./options/validate.js";

export type { ContainerOptions, ResolvedContainerOptions } from "./options/container.js";

import { defaultRuntimeDir } from "./host/runtime-dir.js";
import {
  DEFAULT_MAX_UNPACKED_BYTES,
  type ImageOptions,
  MAX_BYTES_LIMIT,
  MIN_UNPACKED_BYTES,
  resolveImages,
} from "./images/image-options.js";

export interface RuntimeOptions {
  /**
   * Settings per artifact, keyed by manifest digest or by an alias bound to a path or digest (see
   * ArtifactSettings): maxInstances, maxConcurrency, minInstances, env, memory, nanoCpus over the
   * Runtime's. The app's declared defaults only lower them.
   */
  artifacts?: Record<string, ArtifactSettings>;
  /**
   * Where every line the containers write goes (the app, and any process it runs), and the app's own
   * console lines during an execute, tagged with the request id: a function, e.g. `stderrLogs()`.
   * Bounded: a slow, throwing or absent sink never blocks a call or grows host memory; what is
   * dropped is counted in `stats().logs`. Default: none (the lines are still kept for error reports).
   */
  logs?: LogSink;
  /**
   * OpenTelemetry traces and metrics (README: Tracing and metrics): `true` reports to the global
   * providers (a no-op until the service installs an OpenTelemetry SDK), `{ tracerProvider?,
   * meterProvider? }` to the given ones. Default false.
   */
  telemetry?: boolean | TelemetryOptions;
  /** The container engine. Default `new DockerEngine()` (the local Docker socket). */
  engine?: Engine;
  /** Milliseconds a new container has to send its hello frame. Default 10 000. */
  startupTimeout?: number;
  /** Milliseconds a call may take from execute() to its answer, queue time included. Default 30 000. */
  requestTimeout?: number;
  /** Milliseconds close() waits for calls in flight, and then gives a container after SIGTERM before SIGKILL. Default 10 000. */
  shutdownTimeout?: number;
  /** Milliseconds a ready container may sit with nothing in flight before the reaper stops it. Default 900 000. */
  idleTimeout?: number;
  /**
   * Calls a container answers before it is recycled (drained and replaced on demand): a bound on what
   * a leaky app accumulates. 0: no limit. Default 0.
   */
  maxCallsPerContainer?: number;
  /** Milliseconds a container may serve before it is recycled. 0: no limit. Default 0. */
  maxContainerAge?: number;
  /**
   * Milliseconds a ready container may sit idle before the reaper pings it (protocol v2 ping); one that
   * does not answer within min(10 s, max(1 s, pingInterval)) is retired. 0: never. Default 30 000.
   */
  pingInterval?: number;
  /** Milliseconds between reaper passes. Default 1 000. */
  reaperInterval?: number;
  /** Containers per artifact. Default 1. */
  maxInstances?: number;
  /** Requests in flight per container (capped by what the container's hello allows). Default 64. */
  maxConcurrency?: number;
  /** Containers per artifact started by warm() or the first execute() and never reaped. Default 0. */
  minInstances?: number;
  /**
   * Containers per artifact created ahead of demand and not started (0 or 1; default 0): once the
   * artifact has been used and has room under maxInstances (the reaper stopped its last container,
   * say), one is created, so the next call that needs a container pays its start and handshake only.
   * Counted toward maxInstances; a created container runs nothing (no memory or CPU; its writable
   * layer on the engine's disk). Removed by close(), and once the artifact has had no container and
   * no call for idleTimeout. See the README's Performance section for what it saves and costs.
   */
  standby?: number;
  /** Requests waiting per artifact; past it execute() rejects with QueueFullError. Default 1 000. */
  maxQueue?: number;
  /** Largest frame body either side may send, in bytes. Default 16 MiB. */
  maxFrameBytes?: number;
  /**
   * Most bytes of partly received frames held at once over all of the runtime's containers. Past it,
   * one container finishes its frame while the others wait (their frame timeouts suspended), so a
   * burst of large answers costs at most this plus maxFrameBytes, plus one socket read (64 KiB) per
   * other container. Default 64 MiB; at least maxFrameBytes.
   */
  maxBufferedBytes?: number;
  /**
   * Deepest nesting of arrays and objects in a frame from a container (the top-level object is 1),
   * checked on the bytes before parsing and announced in the host's hello. Default 64.
   */
  maxDepth?: number;
  /**
   * Most values in a frame from a container (the top-level value, every array element and every
   * object member), checked on the bytes before parsing and announced in the hello. Default 100 000.
   */
  maxValues?: number;
  /** Environment for the app in every container. */
  env?: Record<string, string>;
  /**
   * The private folder (mode 0700, this user's, not a link: checked before every container start)
   * that holds one folder per container with the socket the runtime listens on. Default
   * `/run/ociapp` as root, else `$XDG_RUNTIME_DIR/ociapp`, else `ociapp-<uid>` in `os.tmpdir()`.
   * At most 64 bytes (Unix socket paths are at most 107 bytes; the runtime appends up to 34).
   */
  socketDir?: string;
  /**
   * Milliseconds after which a container with no client connected exits by itself (0: never).
   * Guards against containers outliving a host that died without close(). Default 60 000.
   */
  orphanTimeout?: number;
  /** Milliseconds a frame from a container may take once its first byte arrived. Default 30 000. */
  frameTimeout?: number;
  /**
   * Milliseconds the runtime waits for the engine's report of a container's exit (exit code, OOM
   * flag, last output) before failing its calls with `exitCode: null`. The report usually takes a few
   * milliseconds; a busy machine takes longer, and gets a slower answer rather than a less exact one.
   * Default 5 000.
   */
  exitReportTimeout?: number;
  /** Confinement of each container. */
  container?: ContainerOptions;
  /** Retention of loaded images (idle time, disk budget). */
  images?: ImageOptions;
  /**
   * Most bytes an artifact's layers may unpack to, measured while it loads (gzip and zstd layers
   * decompressed on the side); past it the load is aborted with ArtifactError. Default 4 GiB.
   */
  maxUnpackedBytes?: number;
}

export interface CallOptions {
  /** Rejects the call with the signal's reason when it aborts; a running request gets a cancel frame. */
  signal?: AbortSignal;
  /** Milliseconds for this call (queue time included), instead of requestTimeout. */
  timeout?: number;
}

export interface ResolvedOptions {
  /** Per-artifact settings by digest or alias (empty when none). */
  artifacts: Map<string, ResolvedArtifactSettings>;
  startupTimeout: number;
  requestTimeout: number;
  shutdownTimeout: number;
  idleTimeout: number;
  reaperInterval: number;
  maxInstances: number;
  maxConcurrency: number;
  minInstances: number;
  standby: number;
  maxQueue: number;
  maxFrameBytes: number;
  maxBufferedBytes: number;
  maxCallsPerContainer: number;
  maxContainerAge: number;
  pingInterval: number;
  maxDepth: number;
  maxValues: number;
  env: Record<string, string>;
  socketDir: string;
  orphanTimeout: number;
  frameTimeout: number;
  exitReportTimeout: number;
  container: ResolvedContainerOptions;
  images: Required<ImageOptions>;
  maxUnpackedBytes: number;
}

/** Variables the runtime sets itself; `env` may not override them. */
export const RESERVED_ENV = [
  "OCIAPP_CONNECT",
  "OCIAPP_MAX_DEPTH",
  "OCIAPP_MAX_VALUES",
  "OCIAPP_MAX_CONCURRENCY",
  "OCIAPP_MAX_FRAME_BYTES",
  "OCIAPP_SHUTDOWN_GRACE_MS",
  "OCIAPP_ORPHAN_TIMEOUT_MS",
  "OCIAPP_SOCKET",
];

// A Unix socket path is at most 107 bytes (sun_path is 108 with its NUL); the runtime appends
// "/<pid>-<id>-XXXXXX/host.sock" (at most 34 bytes with a 7-digit pid).
const MAX_SOCKET_DIR_BYTES = 64;
const MAX_FRAME_BYTES_LIMIT = 1024 * 1024 * 1024;

/** Validates `new Runtime(options)`; every message names the option and the value it got. */
export function resolveOptions(options: RuntimeOptions): ResolvedOptions {
  if (typeof options !== "object" || options === null) {
    throw new OptionsError(`Runtime options must be an object (got ${show(options)})`);
  }
  const known = new Set([
    "artifacts",
    "logs",
    "telemetry",
    "engine",
    "startupTimeout",
    "requestTimeout",
    "shutdownTimeout",
    "idleTimeout",
    "reaperInterval",
    "maxInstances",
    "maxConcurrency",
    "minInstances",
    "standby",
    "maxQueue",
    "maxFrameBytes",
    "maxBufferedBytes",
    "maxCallsPerContainer",
    "maxContainerAge",
    "pingInterval",
    "maxDepth",
    "maxValues",
    "env",
    "socketDir",
    "orphanTimeout",
    "frameTimeout",
    "exitReportTimeout",
    "container",
    "images",
    "maxUnpackedBytes",
  ]);
  for (const key of Object.keys(options)) {
    if (!known.has(key)) throw new OptionsError(`Runtime option ${key} is not a known option`);
  }
  const scope = "Runtime";
  if (options.logs !== undefined && typeof options.logs !== "function") {
    throw new OptionsError(
      `Runtime option logs must be a function taking one log record, such as stderrLogs() (got ${show(options.logs)})`,
    );
  }
  const maxInstances = integer(scope, "maxInstances", options.maxInstances, 1, 1, 1024);
  const minInstances = integer(scope, "minInstances", options.minInstances, 0, 0, 1024);
  if (minInstances > maxInstances) {
    throw new OptionsError(
      `Runtime option minInstances must not exceed maxInstances (got minInstances ${minInstances}, maxInstances ${maxInstances})`,
    );
  }
  const env = stringRecord("env", options.env);
  for (const key of Object.keys(env)) {
    if (key === "" || key.includes("=") || key.includes("\0")) {
      throw new OptionsError(`Runtime option env has an invalid variable name ${show(key)}`);
    }
    if (RESERVED_ENV.includes(key)) {
      throw new OptionsError(
        `Runtime option env.${key} is set by the runtime itself and cannot be overridden`,
      );
    }
  }
  const maxFrameBytes = integer(
    scope,
    "maxFrameBytes",
    options.maxFrameBytes,
    16 * 1024 * 1024,
    MIN_LIMITS.maxFrameBytes,
    MAX_FRAME_BYTES_LIMIT,
  );
  const socketDirInput = options.socketDir ?? defaultRuntimeDir();
  if (typeof socketDirInput !== "string" || socketDirInput === "") {
    throw new OptionsError(`Runtime option socketDir must be a directory path (got ${show(socketDirInput)})`);
  }
  const socketDir = isAbsolute(socketDirInput) ? socketDirInput : resolve(socketDirInput);
  if (Buffer.byteLength(socketDir) > MAX_SOCKET_DIR_BYTES) {
    throw new OptionsError(
      `Runtime option socketDir must be at most ${MAX_SOCKET_DIR_BYTES} bytes long, since Unix socket paths are limited (got ${show(socketDir)})`,
    );
  }
  return {
    artifacts: resolveArtifactSettings(options.artifacts, RESERVED_ENV),
    startupTimeout: integer(scope, "startupTimeout", options.startupTimeout, 10_000, 1),
    requestTimeout: integer(scope, "requestTimeout", options.requestTimeout, 30_000, 1),
    shutdownTimeout: integer(scope, "shutdownTimeout", options.shutdownTimeout, 10_000, 0),
    idleTimeout: integer(scope, "idleTimeout", options.idleTimeout, 900_000, 1),
    reaperInterval: integer(scope, "reaperInterval", options.reaperInterval, 1_000, 10),
    maxInstances,
    maxConcurrency: integer(scope, "maxConcurrency", options.maxConcurrency, 64, 1, 65_536),
    minInstances,
    standby: integer(scope, "standby", options.standby, 0, 0, 1),
    maxQueue: integer(scope, "maxQueue", options.maxQueue, 1_000, 0),
    maxFrameBytes,
    maxBufferedBytes: integer(
      scope,
      "maxBufferedBytes",
      options.maxBufferedBytes,
      Math.max(64 * 1024 * 1024, maxFrameBytes),
      maxFrameBytes,
    ),
    maxCallsPerContainer: integer(scope, "maxCallsPerContainer", options.maxCallsPerContainer, 0, 0),
    maxContainerAge: integer(scope, "maxContainerAge", options.maxContainerAge, 0, 0),
    pingInterval: integer(scope, "pingInterval", options.pingInterval, 30_000, 0),
    maxDepth: integer(scope, "maxDepth", options.maxDepth, DEFAULT_MAX_DEPTH, MIN_LIMITS.maxDepth, 100_000),
    maxValues: integer(
      scope,
      "maxValues",
      options.maxValues,
      DEFAULT_MAX_VALUES,
      MIN_LIMITS.maxValues,
      MAX_FRAME_BYTES_LIMIT,
    ),
    env,
    socketDir,
    orphanTimeout: integer(scope, "orphanTimeout", options.orphanTimeout, 60_000, 0),
    frameTimeout: integer(scope, "frameTimeout", options.frameTimeout, 30_000, 1),
    exitReportTimeout: integer(scope, "exitReportTimeout", options.exitReportTimeout, 5_000, 0),
    container: resolveContainer(options.container),
    images: resolveImages(options.images),
    maxUnpackedBytes: integer(
      scope,
      "maxUnpackedBytes",
      options.maxUnpackedBytes,
      DEFAULT_MAX_UNPACKED_BYTES,
      MIN_UNPACKED_BYTES,
      MAX_BYTES_LIMIT,
    ),
  };
}

/** Validates the options of one execute() call. */
export function resolveCallTimeout(options: CallOptions | undefined, fallback: number): number {
  if (options === undefined) return fallback;
  if (typeof options !== "object" || options === null) {
    throw new OptionsError(`execute() options must be an object (got ${show(options)})`);
  }
  for (const key of Object.keys(options)) {
    if (key !== "signal" && key !== "timeout") {
      throw new OptionsError(`execute() option ${show(key)} is not a known option (known: signal, timeout)`);
    }
  }
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
    throw new OptionsError(`execute() option signal must be an AbortSignal (got ${show(options.signal)})`);
  }
  return integer("execute()", "timeout", options.timeout, fallback, 1);
}
