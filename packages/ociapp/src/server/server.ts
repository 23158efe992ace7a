import { createServer, type Socket } from "node:net";
import { resolve } from "node:path";
import { type AnyApplication, isApplication } from "../application.js";
import { OciappError } from "../errors.js";
import {
  DEFAULT_FRAME_TIMEOUT_MS,
  DEFAULT_MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
} from "../protocol/constants.js";
import { encodeFrame } from "../protocol/frame.js";
import type { HelloMessage } from "../protocol/messages.js";
import { Connection, type ConnectionContext } from "./connection.js";
import { SchemaParser } from "./invoke.js";
import { ConcurrencyLimiter } from "./limiter.js";
import { type BoundSocket, bindSocket } from "./socket-file.js";

export const DEFAULT_SOCKET_PATH = "/run/ociapp/app.sock";
export const DEFAULT_MAX_CONCURRENCY = 64;
export const DEFAULT_SHUTDOWN_GRACE_MS = 10_000;
/** Smallest accepted maxFrameBytes: room for any error frame the server itself sends. */
export const MIN_MAX_FRAME_BYTES = 1024;

export interface ServeOptions {
  app: AnyApplication;
  /** Default /run/ociapp/app.sock. */
  socketPath?: string;
  /** Executes in flight in this process; further requests wait in FIFO order. Default 64. */
  maxConcurrency?: number;
  /** Largest frame body read or written. Default 16 MiB. */
  maxFrameBytes?: number;
  /** Once a frame has begun, the rest must arrive within this long. Default 30 s. */
  frameTimeoutMs?: number;
  /** How long close() lets in-flight requests finish before aborting them. Default 10 s. */
  shutdownGraceMs?: number;
  /** When > 0, the server closes itself after this long without a client. Default 0 (off). */
  orphanTimeoutMs?: number;
  /** Announced in the hello frame; defaults to the app's own name and version fields. */
  appInfo?: { name?: string; version?: string };
  /** One line per noteworthy event (a violation, a client error). Default: stderr. */
  log?: (line: string) => void;
  /** Aborting it closes the server, as close() does. */
  signal?: AbortSignal;
}

export interface ServerStats {
  connections: number;
  /** Requests accepted and not yet answered, over all connections. */
  pending: number;
  /** Executes holding a concurrency slot. */
  running: number;
  /** Requests waiting for a slot. */
  queued: number;
  /** Response bytes written but not yet taken by clients, over all connections. */
  outboundBytes: number;
  /** Connections whose reading is paused for backpressure. */
  pausedConnections: number;
}

/** Why the server stopped: close() was called, or no client came within the orphan timeout. */
export type CloseReason = "closed" | "orphaned";

export interface ServerHandle {
  readonly socketPath: string;
  /** Settles once the server has fully stopped, whoever stopped it. */
  readonly closed: Promise<CloseReason>;
  stats(): ServerStats;
  /**
   * Stops accepting connections, answers new requests "ShuttingDown", lets pending requests finish
   * within graceMs (default shutdownGraceMs), then aborts the rest: they end "Cancelled". Idempotent;
   * calling it again with a smaller grace shortens the wait.
   */
  close(options?: { graceMs?: number }): Promise<void>;
  /** close() with the default grace, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Bounded waits of the last shutdown phases. */
const ABORT_GRACE_MS = 1000;
const END_GRACE_MS = 2000;

function integerOption(
  name: string,
  value: number | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new OciappError(
      "OCIAPP_INVALID_OPTION",
      `${name} must be an integer from ${min} to ${max}, got ${String(value)}`,
    );
  }
  return value;
}

/**
 * Serves app on a Unix socket. Resolves once the socket file exists and accepts connections.
 */
export async function serve(options: ServeOptions): Promise<ServerHandle> {
  if (!isApplication(options.app)) {
    throw new OciappError("OCIAPP_NOT_AN_APPLICATION", "app is not an ociapp Application");
  }
  const signal = options.signal;
  signal?.throwIfAborted();
  const server = new AppServer(options);
  await server.listen();
  if (signal) {
    const onAbort = (): void => void server.close();
    if (signal.aborted) onAbort();
    else {
      signal.addEventListener("abort", onAbort, { once: true });
      void server.closed.then(() => signal.removeEventListener("abort", onAbort));
    }
  }
  return server;
}

class AppServer implements ServerHandle, ConnectionContext {
  readonly app: AnyApplication;
  readonly socketPath: string;
  readonly limiter: ConcurrencyLimiter;
  readonly requestParser: SchemaParser;
  readonly responseParser: SchemaParser;
  readonly maxFrameBytes: number;
  readonly frameTimeoutMs: number;
  readonly maxPendingRequests: number;
  readonly maxPendingBytes: number;
  readonly maxOutboundBytes: number;
  readonly closed: Promise<CloseReason>;
  readonly #shutdownGraceMs: number;
  readonly #orphanTimeoutMs: number;
  readonly #log: (line: string) => void;
  readonly #hello: Buffer;
  readonly #server = createServer();
  readonly #connections = new Set<Connection>();
  #bound: BoundSocket | undefined;
  #nextConnectionId = 1;
  #pending = 0;
  #shuttingDown = false;
  #closing: Promise<void> | undefined;
  #orphanTimer: ReturnType<typeof setTimeout> | undefined;
  /** Woken whenever a request settles or a connection closes, during shutdown. */
  #wake: (() => void) | undefined;
  /** Cuts the current shutdown wait short (a second close() with a smaller grace). */
  #graceTimer: { timer: ReturnType<typeof setTimeout>; resolve: () => void; deadline: number } | undefined;
  #resolveClosed!: (reason: CloseReason) => void;
  /** When pending requests stop getting time to finish; lowered by a second close(). */
  #graceDeadline = Number.POSITIVE_INFINITY;

  constructor(options: ServeOptions) {
    this.app = options.app;
    this.requestParser = new SchemaParser(this.app.request);
    this.responseParser = new SchemaParser(this.app.response);
    this.socketPath = resolve(options.socketPath ?? DEFAULT_SOCKET_PATH);
    const maxConcurrency = integerOption(
      "maxConcurrency",
      options.maxConcurrency,
      DEFAULT_MAX_CONCURRENCY,
      1,
      1_000_000,
    );
    this.limiter = new ConcurrencyLimiter(maxConcurrency);
    this.maxFrameBytes = integerOption(
      "maxFrameBytes",
      options.maxFrameBytes,
      DEFAULT_MAX_FRAME_BYTES,
      MIN_MAX_FRAME_BYTES,
      0xffff_ffff,
    );
    this.frameTimeoutMs = integerOption(
      "frameTimeoutMs",
      options.frameTimeoutMs,
      DEFAULT_FRAME_TIMEOUT_MS,
      1,
      2 ** 31 - 1,
    );
    this.#shutdownGraceMs = integerOption(
      "shutdownGraceMs",
      options.shutdownGraceMs,
      DEFAULT_SHUTDOWN_GRACE_MS,
      0,
      2 ** 31 - 1,
    );
    this.#orphanTimeoutMs = integerOption("orphanTimeoutMs", options.orphanTimeoutMs, 0, 0, 2 ** 31 - 1);
    // Per-connection flow control: enough to keep every slot busy, bounded in count and bytes.
    this.maxPendingRequests = Math.max(256, maxConcurrency * 4);
    this.maxPendingBytes = Math.max(64 * 1024 * 1024, this.maxFrameBytes * 2);
    this.maxOutboundBytes = 1024 * 1024;
    this.#log = options.log ?? ((line) => process.stderr.write(`ociapp: ${line}\n`));
    const name = options.appInfo?.name ?? this.app.name;
    const version = options.appInfo?.version ?? this.app.version;
    const hello: HelloMessage = {
      type: "hello",
      protocol: PROTOCOL_VERSION,
      maxConcurrency,
      maxFrameBytes: this.maxFrameBytes,
    };
    if (name !== undefined || version !== undefined) {
      hello.app = {};
      if (typeof name === "string") hello.app.name = name;
      if (typeof version === "string") hello.app.version = version;
    }
    this.#hello = encodeFrame(hello);
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    this.#server.on("connection", this.#onConnection);
  }

  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  async listen(): Promise<void> {
    this.#bound = await bindSocket(this.#server, this.socketPath);
    // Only now: a failed bind is reported once, by bindSocket's error, not also as a logged line.
    this.#server.on("error", (error) => this.#log(`server error: ${error.message}`));
    this.#armOrphanTimer();
  }

  stats(): ServerStats {
    let outboundBytes = 0;
    let pausedConnections = 0;
    for (const connection of this.#connections) {
      outboundBytes += connection.outboundBytes;
      if (connection.readPaused) pausedConnections++;
    }
    return {
      connections: this.#connections.size,
      pending: this.#pending,
      running: this.limiter.active,
      queued: this.limiter.waiting,
      outboundBytes,
      pausedConnections,
    };
  }

  log(line: string): void {
    this.#log(line);
  }

  requestAccepted(): void {
    this.#pending++;
  }

  requestSettled(): void {
    this.#pending--;
    this.#wake?.();
  }

  connectionClosed(connection: Connection): void {
    this.#connections.delete(connection);
    if (this.#connections.size === 0) this.#armOrphanTimer();
    this.#wake?.();
  }

  close(options: { graceMs?: number } = {}): Promise<void> {
    const graceMs = options.graceMs ?? this.#shutdownGraceMs;
    const deadline = Date.now() + graceMs;
    if (deadline < this.#graceDeadline) {
      this.#graceDeadline = deadline;
      // Already waiting out a longer grace: cut that wait short.
      const wait = this.#graceTimer;
      if (wait && deadline < wait.deadline) {
        clearTimeout(wait.timer);
        wait.timer = setTimeout(wait.resolve, graceMs);
        wait.deadline = deadline;
      }
    }
    this.#closing ??= this.#shutdown("closed");
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  readonly #onConnection = (socket: Socket): void => {
    if (this.#shuttingDown) {
      socket.destroy();
      return;
    }
    this.#clearOrphanTimer();
    const connection = new Connection(this.#nextConnectionId++, socket, this, this.#hello);
    this.#connections.add(connection);
  };

  #armOrphanTimer(): void {
    if (this.#orphanTimeoutMs <= 0 || this.#shuttingDown || this.#orphanTimer) return;
    this.#orphanTimer = setTimeout(() => {
      this.#orphanTimer = undefined;
      if (this.#connections.size > 0 || this.#closing) return;
      this.#log(`no client for ${this.#orphanTimeoutMs} ms: shutting down`);
      this.#graceDeadline = Date.now();
      this.#closing = this.#shutdown("orphaned");
    }, this.#orphanTimeoutMs);
    this.#orphanTimer.unref();
  }

  #clearOrphanTimer(): void {
    if (this.#orphanTimer === undefined) return;
    clearTimeout(this.#orphanTimer);
    this.#orphanTimer = undefined;
  }

  /** Resolves when predicate holds (re-checked on every settle/close) or after ms. */
  async #waitUntil(predicate: () => boolean, ms: number): Promise<void> {
    if (predicate()) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        if (this.#graceTimer) clearTimeout(this.#graceTimer.timer);
        this.#graceTimer = undefined;
        this.#wake = undefined;
        resolve();
      };
      this.#graceTimer = { timer: setTimeout(done, ms), resolve: done, deadline: Date.now() + ms };
      this.#wake = () => {
        if (predicate()) done();
      };
    });
  }

  async #shutdown(reason: CloseReason): Promise<void> {
    this.#shuttingDown = true;
    this.#clearOrphanTimer();
    this.#server.close();
    await this.#bound?.remove();
    for (const connection of this.#connections) connection.drain();
    await this.#waitUntil(() => this.#pending === 0, Math.max(0, this.#graceDeadline - Date.now()));
    if (this.#pending > 0) {
      const message = "the server shut down before the request finished";
      for (const connection of this.#connections) connection.abortAll(message);
      // Executes that honour their signal end "Cancelled" by themselves; the rest are answered for.
      await this.#waitUntil(() => this.#pending === 0, ABORT_GRACE_MS);
      for (const connection of this.#connections) connection.cancelRemaining(message);
    }
    for (const connection of this.#connections) connection.close(false);
    await this.#waitUntil(() => this.#connections.size === 0, END_GRACE_MS);
    for (const connection of this.#connections) connection.close(true);
    this.#resolveClosed(reason);
  }
}
