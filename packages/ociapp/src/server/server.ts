import { createServer, type Server, type Socket } from "node:net";
import type { AnyApplication } from "../application.js";
import { MAX_ERROR_MESSAGE_CHARS } from "../protocol/constants.js";
import type { RemoteError } from "../protocol/messages.js";
import { connectToHost } from "./connect.js";
import { Connection, type ConnectionContext } from "./connection.js";
import { encodeAppHello } from "./hello.js";
import { boundText, SchemaParser, thrownError } from "./invoke.js";
import { ConcurrencyLimiter } from "./limiter.js";
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  resolveOptions,
  type ServeOptions,
  type ServerSettings,
} from "./options.js";
import { type PrimeSample, primeRequestPath, primeSample } from "./prime-path.js";
import { type BoundSocket, bindSocket } from "./socket-file.js";

export interface ServerStats {
  connections: number;
  /** Requests accepted and not yet answered, over all connections. */
  pending: number;
  /** Executes holding a concurrency slot. */
  running: number;
  /** Requests waiting for a slot. */
  queued: number;
  /** Answer and log bytes waiting to be taken by hosts, over all connections. */
  outboundBytes: number;
  /** Connections whose reading is paused for backpressure. */
  pausedConnections: number;
}

/**
 * Why the server stopped: close() was called (or its signal aborted), no host came within the orphan
 * timeout (listen mode), or the connection that was its whole life ended (connect mode).
 */
export type CloseReason = "closed" | "orphaned" | "disconnected";

export interface ServerHandle {
  /** listen: a socket of its own, any number of connections; connect: one connection to the host. */
  readonly mode: "listen" | "connect";
  /** The socket listened on or connected to (absolute). */
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
/** Connect mode: once the host is gone, aborted executes get this long to end before closed settles. */
const DISCONNECT_GRACE_MS = 500;

/**
 * Serves app over a Unix socket: listens on socketPath (the default) or connects to connectPath.
 * Resolves once the socket accepts connections (listen) or the host's socket is connected (connect);
 * in connect mode it rejects with OciappConnectError when the host cannot be reached in time.
 */
export async function serve(options: ServeOptions): Promise<ServerHandle> {
  const settings = resolveOptions(options);
  const signal = options.signal;
  signal?.throwIfAborted();
  const server = new AppServer(settings);
  if (settings.mode === "listen") await server.listen();
  else await server.connect(signal);
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
  readonly mode: "listen" | "connect";
  readonly socketPath: string;
  readonly limiter: ConcurrencyLimiter;
  readonly requestParser: SchemaParser;
  readonly responseParser: SchemaParser;
  readonly errorStacks: boolean;
  readonly maxFrameBytes: number;
  readonly maxDepth: number;
  readonly maxValues: number;
  readonly frameTimeoutMs: number;
  readonly maxPendingRequests: number;
  readonly maxPendingBytes: number;
  readonly maxOutboundBytes: number;
  readonly hello: Buffer;
  readonly closed: Promise<CloseReason>;
  readonly #shutdownGraceMs: number;
  readonly #orphanTimeoutMs: number;
  readonly #log: (line: string) => void;
  readonly #connections = new Set<Connection>();
  #listener: Server | undefined;
  #bound: BoundSocket | undefined;
  #nextConnectionId = 1;
  #pending = 0;
  #shuttingDown = false;
  #closing: Promise<void> | undefined;
  #orphanTimer: ReturnType<typeof setTimeout> | undefined;
  #priming: Promise<RemoteError | undefined> | undefined;
  primeSample: PrimeSample | undefined;
  #primed = false;
  /** Woken whenever a request settles or a connection closes, during shutdown. */
  #wake: (() => void) | undefined;
  /** Cuts the current shutdown wait short (a second close() with a smaller grace). */
  #graceTimer: { timer: ReturnType<typeof setTimeout>; resolve: () => void; deadline: number } | undefined;
  #resolveClosed!: (reason: CloseReason) => void;
  /** When pending requests stop getting time to finish; lowered by a second close(). */
  #graceDeadline = Number.POSITIVE_INFINITY;

  constructor(settings: ServerSettings) {
    this.app = settings.app;
    this.mode = settings.mode;
    this.socketPath = settings.socketPath;
    this.requestParser = new SchemaParser(this.app.request);
    this.responseParser = new SchemaParser(this.app.response);
    this.errorStacks = this.app.errorStacks === true;
    this.limiter = new ConcurrencyLimiter(settings.maxConcurrency);
    this.maxFrameBytes = settings.maxFrameBytes;
    this.maxDepth = settings.maxDepth;
    this.maxValues = settings.maxValues;
    this.frameTimeoutMs = settings.frameTimeoutMs;
    this.#shutdownGraceMs = settings.shutdownGraceMs;
    this.#orphanTimeoutMs = settings.orphanTimeoutMs;
    // Per-connection flow control: enough to keep every slot busy, bounded in count and bytes.
    this.maxPendingRequests = Math.max(256, settings.maxConcurrency * 4);
    this.maxPendingBytes = Math.max(64 * 1024 * 1024, this.maxFrameBytes * 2);
    this.maxOutboundBytes = 1024 * 1024;
    this.#log = settings.log;
    this.hello = encodeAppHello(settings);
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
  }

  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  /** Listen mode: binds the socket file (see bindSocket); the orphan timer starts now. */
  async listen(): Promise<void> {
    const listener = createServer();
    listener.on("connection", (socket: Socket) => {
      if (this.#shuttingDown) {
        socket.destroy();
        return;
      }
      this.#clearOrphanTimer();
      this.#addConnection(socket);
    });
    this.#bound = await bindSocket(listener, this.socketPath);
    this.#listener = listener;
    // Only now: a failed bind is reported once, by bindSocket's error, not also as a logged line.
    listener.on("error", (error) => this.#log(`server error: ${error.message}`));
    this.#armOrphanTimer();
  }

  /** Connect mode: reaches the host within the orphan timeout (0: 60 s), creating nothing on disk. */
  async connect(signal: AbortSignal | undefined): Promise<void> {
    const timeoutMs = this.#orphanTimeoutMs > 0 ? this.#orphanTimeoutMs : DEFAULT_CONNECT_TIMEOUT_MS;
    this.#addConnection(await connectToHost(this.socketPath, timeoutMs, signal));
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

  prime(): Promise<RemoteError | undefined> | undefined {
    if (this.#primed) return undefined;
    this.#priming ??= this.#runPrime();
    return this.#priming;
  }

  /** The app's prime() hook, then the request path run on its sample (see primeRequestPath). */
  async #runPrime(): Promise<RemoteError | undefined> {
    let failure: RemoteError | undefined;
    let sample: PrimeSample | undefined;
    try {
      sample = primeSample(await this.app.prime?.());
      this.primeSample = sample;
    } catch (error) {
      const thrown = thrownError(error, "prime", this.errorStacks);
      failure = {
        ...thrown,
        type: "PrimeError",
        message: boundText(`prime() failed: ${thrown.type}: ${thrown.message}`, MAX_ERROR_MESSAGE_CHARS),
      };
    }
    try {
      await primeRequestPath(this, sample);
    } finally {
      this.#primed = true;
    }
    return failure;
  }

  connectionClosed(connection: Connection): void {
    this.#connections.delete(connection);
    this.#wake?.();
    if (this.mode === "connect") {
      // The connection was the server's whole life (a shutdown already under way just goes on).
      this.#closing ??= this.#stopDisconnected();
    } else if (this.#connections.size === 0) {
      this.#armOrphanTimer();
    }
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

  #addConnection(socket: Socket): void {
    this.#connections.add(new Connection(this.#nextConnectionId++, socket, this));
  }

  #armOrphanTimer(): void {
    if (this.#orphanTimeoutMs <= 0 || this.#shuttingDown || this.#orphanTimer) return;
    this.#orphanTimer = setTimeout(() => {
      this.#orphanTimer = undefined;
      if (this.#connections.size > 0 || this.#closing) return;
      this.#log(`no host connected for ${this.#orphanTimeoutMs} ms: shutting down`);
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

  /**
   * Connect mode, the host's connection ended: its requests were aborted as it closed (nobody is left
   * to answer); their executes get a moment to end before closed settles, and the CLI exits.
   */
  async #stopDisconnected(): Promise<void> {
    this.#shuttingDown = true;
    await this.#waitUntil(() => this.#pending === 0, DISCONNECT_GRACE_MS);
    this.#resolveClosed("disconnected");
  }

  async #shutdown(reason: CloseReason): Promise<void> {
    this.#shuttingDown = true;
    this.#clearOrphanTimer();
    this.#listener?.close();
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
