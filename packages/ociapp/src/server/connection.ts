import type { Socket } from "node:net";
import type { HostHelloMessage, HostMessage, LogLevel, RemoteError } from "../protocol/messages.js";
import { parseHostMessage, parseTraceContext } from "../protocol/parse.js";
import { MessageReader } from "../protocol/reader.js";
import { ProtocolViolationError } from "../protocol/violation.js";
import { cancelledError } from "./invoke.js";
import { logRecordStorage } from "./log-records.js";
import { ServerRequest } from "./request.js";
import { RequestRunner, type RunnerContext, type RunnerOwner } from "./runner.js";
import { FrameWriter } from "./writer.js";

/** What a connection needs from its server. */
export interface ConnectionContext extends RunnerContext {
  /** Our own limits, announced in our hello and enforced on every frame received. */
  readonly maxFrameBytes: number;
  readonly maxDepth: number;
  readonly maxValues: number;
  readonly frameTimeoutMs: number;
  /** Reading pauses while this many requests of the connection are pending ... */
  readonly maxPendingRequests: number;
  /** ... or while their frames add up to this many bytes ... */
  readonly maxPendingBytes: number;
  /** ... or while this many bytes wait to be written (log frames are dropped past it). */
  readonly maxOutboundBytes: number;
  /** true once the server drains: new requests are answered "ShuttingDown". */
  readonly shuttingDown: boolean;
  /** Our hello frame, encoded once for every connection. */
  readonly hello: Buffer;
  /**
   * The app's prime hook, run once per process: undefined when there is nothing (left) to wait for,
   * else the outcome every prime ping that came meanwhile waits for (a RemoteError if it threw).
   */
  prime(): Promise<RemoteError | undefined> | undefined;
  log(line: string): void;
  requestAccepted(): void;
  requestSettled(): void;
  connectionClosed(connection: Connection): void;
}

/**
 * - open: requests are read and served.
 * - draining: the server drains: new requests are answered "ShuttingDown" and the socket is ended
 *   once every pending request has its final frame.
 * - closing: end() was called; waiting for the socket to close.
 * - closed: the socket is gone; results still arriving are dropped.
 */
export type ConnectionState = "open" | "draining" | "closing" | "closed";

/**
 * One connection to a host: our hello first, then the host's hello (its first frame, once), then
 * requests, cancels and pings, read in order, with flow control; answers go out through a FrameWriter
 * within the host's limits.
 */
export class Connection implements RunnerOwner {
  readonly id: number;
  readonly #socket: Socket;
  readonly #context: ConnectionContext;
  readonly #reader: MessageReader;
  readonly #writer: FrameWriter;
  readonly #runner: RequestRunner;
  readonly #pending = new Map<string, ServerRequest>();
  /** Ids of prime pings waiting for the prime hook: they share the id space with requests. */
  readonly #primePings = new Set<string>();
  #pendingBytes = 0;
  #state: ConnectionState = "open";
  #readPaused = false;
  #helloReceived = false;
  /** The host's hello asked for log records. */
  #logRecords = false;

  constructor(id: number, socket: Socket, context: ConnectionContext) {
    this.id = id;
    this.#socket = socket;
    this.#context = context;
    socket.setNoDelay?.(true);
    this.#writer = new FrameWriter(socket, context.maxOutboundBytes);
    this.#runner = new RequestRunner(context, this);
    this.#reader = new MessageReader(socket, {
      maxFrameBytes: context.maxFrameBytes,
      maxDepth: context.maxDepth,
      maxValues: context.maxValues,
      frameTimeoutMs: context.frameTimeoutMs,
      onMessage: this.#onMessage,
      onViolation: this.#onViolation,
    });
    socket.on("end", this.#onEnd);
    socket.on("close", this.#onClose);
    socket.on("error", this.#onError);
    socket.on("drain", this.#updateFlow);
    // First thing, without waiting for the host's hello.
    socket.write(context.hello);
  }

  get state(): ConnectionState {
    return this.#state;
  }

  get pendingCount(): number {
    return this.#pending.size;
  }

  get outboundBytes(): number {
    return this.#writer.outboundBytes;
  }

  get readPaused(): boolean {
    return this.#readPaused;
  }

  /** Server shutdown, phase 1: answer new requests "ShuttingDown" and end once idle. */
  drain(): void {
    if (this.#state !== "open") return;
    this.#state = "draining";
    this.#endIfIdle();
  }

  /**
   * Server shutdown, phase 2 (or the connection that was the server's whole life has gone): abort
   * every pending request. Queued ones end "Cancelled" at once; running ones when execute returns.
   */
  abortAll(message: string): void {
    for (const request of this.#pending.values()) this.#runner.abort(request, message);
  }

  /** Server shutdown, last phase: any request still pending gets its "Cancelled" frame now. */
  cancelRemaining(message: string): void {
    for (const request of [...this.#pending.values()]) this.finish(request, false, cancelledError(message));
  }

  /** Ends the socket after its queued writes, or destroys it when force is set. */
  close(force: boolean): void {
    if (this.#state === "closed") return;
    if (force) {
      this.#socket.destroy();
      return;
    }
    this.#end();
  }

  /** RunnerOwner: a request's final frame. value is the response payload when ok, else the RemoteError. */
  finish(request: ServerRequest, ok: boolean, value: unknown): void {
    if (request.done) return;
    request.done = true;
    request.input = undefined;
    this.#pending.delete(request.requestId);
    this.#pendingBytes -= request.bytes;
    this.#context.requestSettled();
    if (this.#state === "open" || this.#state === "draining") {
      this.#writer.sendAnswer(request.requestId, ok, value);
      this.#updateFlow();
      this.#endIfIdle();
    }
  }

  /** RunnerOwner: a console line the request's execute wrote. */
  log(request: ServerRequest, level: LogLevel, text: string): boolean {
    if (!this.#logRecords || (this.#state !== "open" && this.#state !== "draining")) return false;
    this.#writer.sendLog(level, request.requestId, text);
    this.#updateFlow();
    return true;
  }

  readonly #onMessage = (value: unknown, frameBytes: number): void => {
    const message = parseHostMessage(value);
    if (!this.#helloReceived) {
      this.#onFirstFrame(message);
      return;
    }
    switch (message.type) {
      // A prime request takes the request's path in full (its slot, flow control and accounting
      // included); only the runner tells them apart, and never runs execute for it.
      case "request":
      case "prime": {
        const id = message.id;
        this.#checkNotInFlight(id);
        if (this.#context.shuttingDown) {
          this.#writer.sendAnswer(id, false, {
            type: "ShuttingDown",
            message: "the server is shutting down and accepts no new requests",
          });
          return;
        }
        const request = new ServerRequest(this.#runner, id, frameBytes);
        let payload: unknown;
        if (message.type === "prime") request.prime = true;
        else {
          payload = message.payload;
          if (message.trace !== undefined) request.trace = parseTraceContext(message.trace);
        }
        this.#pending.set(id, request);
        this.#pendingBytes += frameBytes;
        this.#context.requestAccepted();
        this.#runner.accept(request, payload);
        this.#updateFlow();
        return;
      }
      case "cancel": {
        const request = this.#pending.get(message.id);
        // A cancel for an id not in flight is expected (it may have just finished): ignore it.
        if (request) this.#runner.abort(request, "request cancelled by the host");
        return;
      }
      case "ping":
        this.#onPing(message.id, message.prime === true);
        return;
      case "hello":
        throw new ProtocolViolationError("unexpected-hello", "the host sent a second hello");
    }
  };

  #onFirstFrame(message: HostMessage): void {
    if (message.type !== "hello") {
      throw new ProtocolViolationError(
        "missing-hello",
        `the host's first frame must be its hello, not a ${message.type}`,
      );
    }
    this.#helloReceived = true;
    const { limits } = message as HostHelloMessage;
    this.#writer.limits = {
      maxFrameBytes: limits.maxFrameBytes,
      maxDepth: limits.maxDepth,
      maxValues: limits.maxValues,
    };
    if (message.logRecords === true) {
      this.#logRecords = true;
      this.#runner.recordLogs(logRecordStorage());
    }
  }

  /**
   * pong once the frames before the ping have been dispatched (they have: frames are handled in
   * order), taking no concurrency slot. A prime ping first waits for the prime hook.
   */
  #onPing(id: string, prime: boolean): void {
    this.#checkNotInFlight(id);
    const priming = prime ? this.#context.prime() : undefined;
    if (priming === undefined) {
      this.#writer.sendPong(id);
      return;
    }
    this.#primePings.add(id);
    void priming.then((failure) => {
      if (!this.#primePings.delete(id)) return;
      if (this.#state !== "open" && this.#state !== "draining") return;
      if (failure === undefined) this.#writer.sendPong(id);
      else this.#writer.sendAnswer(id, false, failure);
      this.#updateFlow();
      this.#endIfIdle();
    });
  }

  #checkNotInFlight(id: string): void {
    if (this.#pending.has(id) || this.#primePings.has(id)) {
      throw new ProtocolViolationError(
        "duplicate-id",
        `id ${JSON.stringify(id.length > 64 ? `${id.slice(0, 64)}…` : id)} is already in flight`,
      );
    }
  }

  /**
   * Pauses reading while this connection holds too much work or unread output, and resumes once all
   * three are back under half their limit (hysteresis, so it does not flap around one threshold).
   */
  readonly #updateFlow = (): void => {
    if (this.#state === "closed" || this.#state === "closing") return;
    const context = this.#context;
    if (!this.#readPaused) {
      if (
        this.#pending.size >= context.maxPendingRequests ||
        this.#pendingBytes >= context.maxPendingBytes ||
        this.#writer.outboundBytes >= context.maxOutboundBytes
      ) {
        this.#readPaused = true;
        this.#reader.pause();
      }
    } else if (
      this.#pending.size <= context.maxPendingRequests >>> 1 &&
      this.#pendingBytes <= context.maxPendingBytes / 2 &&
      this.#writer.outboundBytes <= context.maxOutboundBytes >>> 1
    ) {
      this.#readPaused = false;
      this.#reader.resume();
    }
  };

  #endIfIdle(): void {
    if (this.#state === "draining" && this.#pending.size === 0 && this.#primePings.size === 0) this.#end();
  }

  #end(): void {
    if (this.#state === "closing" || this.#state === "closed") return;
    this.#state = "closing";
    this.#reader.dispose();
    this.#writer.flush();
    this.#socket.end();
  }

  readonly #onViolation = (error: ProtocolViolationError): void => {
    this.#context.log(
      `connection ${this.id}: protocol violation (${error.reason}): ${error.message}; closing it`,
    );
    this.#socket.destroy();
  };

  readonly #onEnd = (): void => {
    // The host ended its side. A half-closed host cannot be told from a gone one until a write
    // fails, so its work stops now rather than running for nobody (node ends our side in turn).
    if (this.#state === "open" || this.#state === "draining") this.#state = "closing";
    this.#reader.dispose();
    this.abortAll("the host connection closed");
  };

  readonly #onError = (error: Error): void => {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "EPIPE" && code !== "ECONNRESET")
      this.#context.log(`connection ${this.id}: ${error.message}`);
  };

  readonly #onClose = (): void => {
    if (this.#state === "closed") return;
    this.#state = "closed";
    this.#reader.dispose();
    this.#socket.removeListener("end", this.#onEnd);
    this.#socket.removeListener("drain", this.#updateFlow);
    this.#primePings.clear();
    // Nobody is left to answer: stop the work. Results that still arrive are dropped.
    this.abortAll("the host connection closed");
    this.#context.connectionClosed(this);
  };
}
