import { resolve } from "node:path";
import { type AnyApplication, isApplication } from "../application.js";
import { OciappError, OciappUsageError } from "../errors.js";
import {
  DEFAULT_FRAME_TIMEOUT_MS,
  DEFAULT_MAX_DEPTH,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_MAX_VALUES,
  MAX_DECLARABLE_FRAME_BYTES,
  MIN_LIMITS,
} from "../protocol/constants.js";

export const DEFAULT_SOCKET_PATH = "/run/ociapp/app.sock";
export const DEFAULT_MAX_CONCURRENCY = 64;
export const DEFAULT_SHUTDOWN_GRACE_MS = 10_000;
/** In connect mode, an orphan timeout of 0 means this long to reach the host. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 60_000;
/** Smallest accepted maxFrameBytes: room for any error frame the server itself sends. */
export const MIN_MAX_FRAME_BYTES: number = MIN_LIMITS.maxFrameBytes;

export interface ServeOptions {
  app: AnyApplication;
  /**
   * Listen mode (local development, tools): the socket to listen on, for any number of connections.
   * The default mode, at /run/ociapp/app.sock, when connectPath is not given either.
   */
  socketPath?: string;
  /**
   * Connect mode (what a runtime uses): the host's socket to connect to. Nothing is created next to
   * it (its folder may be read-only), and the one connection is the server's whole life.
   */
  connectPath?: string;
  /** Executes in flight in this process; further requests wait in FIFO order. Default 64. */
  maxConcurrency?: number;
  /** Largest frame body read, in bytes (at least 1024). Default 16 MiB. */
  maxFrameBytes?: number;
  /** Deepest nesting of a frame read (at least 4). Default 64. */
  maxDepth?: number;
  /** Most values in a frame read (at least 64). Default 100,000. */
  maxValues?: number;
  /** Once a frame has begun, the rest must arrive within this many ms. Default 30,000. */
  frameTimeoutMs?: number;
  /** How long close() lets in-flight requests finish before aborting them, in ms. Default 10,000. */
  shutdownGraceMs?: number;
  /**
   * Listen mode: when > 0, the server closes itself after this many ms without a host connected.
   * Connect mode: how long to keep trying to reach the host (0: 60,000). Default 0.
   */
  orphanTimeoutMs?: number;
  /** Announced in the hello frame; defaults to the app's own name and version fields. */
  appInfo?: { name?: string; version?: string };
  /** One line per noteworthy event (a violation, a connection error). Default: stderr. */
  log?: (line: string) => void;
  /** Aborting it closes the server, as close() does; while connecting, it stops trying. */
  signal?: AbortSignal;
}

/** ServeOptions checked, with their defaults filled in. */
export interface ServerSettings {
  app: AnyApplication;
  mode: "listen" | "connect";
  /** Absolute: the socket listened on or connected to. */
  socketPath: string;
  maxConcurrency: number;
  maxFrameBytes: number;
  maxDepth: number;
  maxValues: number;
  frameTimeoutMs: number;
  shutdownGraceMs: number;
  orphanTimeoutMs: number;
  appInfo: { name?: string; version?: string };
  log: (line: string) => void;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

function integerOption(name: string, value: number | undefined, fallback: number, min: number, max: number) {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new OciappError(
      "OCIAPP_INVALID_OPTION",
      `${name} must be an integer from ${min} to ${max}, got ${String(value)}`,
    );
  }
  return value;
}

export function resolveOptions(options: ServeOptions): ServerSettings {
  if (!isApplication(options.app)) {
    throw new OciappError("OCIAPP_NOT_AN_APPLICATION", "app is not an ociapp Application");
  }
  if (options.socketPath !== undefined && options.connectPath !== undefined) {
    throw new OciappUsageError(
      "OCIAPP_INVALID_OPTION",
      "socketPath (listen) and connectPath (connect) exclude each other: give one",
    );
  }
  const mode = options.connectPath === undefined ? "listen" : "connect";
  const name = options.appInfo?.name ?? options.app.name;
  const version = options.appInfo?.version ?? options.app.version;
  const appInfo: { name?: string; version?: string } = {};
  if (typeof name === "string") appInfo.name = name;
  if (typeof version === "string") appInfo.version = version;
  return {
    app: options.app,
    mode,
    socketPath: resolve(options.connectPath ?? options.socketPath ?? DEFAULT_SOCKET_PATH),
    maxConcurrency: integerOption(
      "maxConcurrency",
      options.maxConcurrency,
      DEFAULT_MAX_CONCURRENCY,
      1,
      1_000_000,
    ),
    maxFrameBytes: integerOption(
      "maxFrameBytes",
      options.maxFrameBytes,
      DEFAULT_MAX_FRAME_BYTES,
      MIN_LIMITS.maxFrameBytes,
      MAX_DECLARABLE_FRAME_BYTES,
    ),
    maxDepth: integerOption("maxDepth", options.maxDepth, DEFAULT_MAX_DEPTH, MIN_LIMITS.maxDepth, 100_000),
    maxValues: integerOption(
      "maxValues",
      options.maxValues,
      DEFAULT_MAX_VALUES,
      MIN_LIMITS.maxValues,
      MAX_DECLARABLE_FRAME_BYTES,
    ),
    frameTimeoutMs: integerOption(
      "frameTimeoutMs",
      options.frameTimeoutMs,
      DEFAULT_FRAME_TIMEOUT_MS,
      1,
      MAX_TIMER_MS,
    ),
    shutdownGraceMs: integerOption(
      "shutdownGraceMs",
      options.shutdownGraceMs,
      DEFAULT_SHUTDOWN_GRACE_MS,
      0,
      MAX_TIMER_MS,
    ),
    orphanTimeoutMs: integerOption("orphanTimeoutMs", options.orphanTimeoutMs, 0, 0, MAX_TIMER_MS),
    appInfo,
    log: options.log ?? ((line) => process.stderr.write(`ociapp: ${line}\n`)),
  };
}
