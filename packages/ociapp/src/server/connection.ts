import type { Socket } from "node:net";
import type { AnyApplication } from "../application.js";
import { encodeFrame } from "../protocol/frame.js";
import { type ClientMessage, parseClientMessage, type RemoteError } from "../protocol/messages.js";
import { MessageReader } from "../protocol/reader.js";
import { ProtocolViolationError } from "../protocol/violation.js";
import { Cancellation } from "./cancellation.js";
import { cancelled, execute, type Outcome, validateRequest } from "./invoke.js";
import type { ConcurrencyLimiter, Waiter } from "./limiter.js";

/** What a connection needs from its server. */
export interface ConnectionContext {
  readonly app: AnyApplication;
  readonly limiter: ConcurrencyLimiter;
  readonly maxFrameBytes: number;
  readonly frameTimeoutMs: number;
  /** Reading pauses while this many requests of the connection are pending ... */
  readonly maxPendingRequests: number;
  /** ... or while their frames add up to this many bytes ... */
  readonly maxPendingBytes: number;
  /** ... or while this many response bytes wait in the socket's write buffer. */
  readonly maxOutboundBytes: number;
  /** true once the server drains: new requests are answered "ShuttingDown". */
  readonly shuttingDown: boolean;
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

interface PendingRequest {
  readonly id: string;
  readonly bytes: number;
  readonly cancellation: Cancellation;
  waiter: Waiter | undefined;
  done: boolean;
}

export class Connection {
  readonly id: number;
  readonly #socket: Socket;
  readonly #context: ConnectionContext;
  readonly #reader: MessageReader;
  readonly #pending = new Map<string, PendingRequest>();
  #pendingBytes = 0;
  #state: ConnectionState = "open";
  #readPaused = false;
  #corked = false;

  constructor(id: number, socket: Socket, context: ConnectionContext, hello: Buffer) {
    this.id = id;
    this.#socket = socket;
    this.#context = context;
    socket.setNoDelay?.(true);
    this.#reader = new MessageReader(socket, {
      maxFrameBytes: context.maxFrameBytes,
      frameTimeoutMs: context.frameTimeoutMs,
      onMessage: this.#onMessage,
      onViolation: this.#onViolation,
    });
    socket.on("end", this.#onEnd);
    socket.on("close", this.#onClose);
    socket.on("error", this.#onError);
    socket.on("drain", this.#updateFlow);
    socket.write(hello);
  }

  get state(): ConnectionState {
    return this.#state;
  }

  get pendingCount(): number {
    return this.#pending.size;
  }

  get outboundBytes(): number {
    return this.#socket.writableLength;
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
   * Server shutdown, phase 2: abort every pending request. Queued ones end "Cancelled" at once;
   * running ones end "Cancelled" when their execute returns.
   */
  abortAll(message: string): void {
    for (const request of this.#pending.values()) this.#abort(request, message);
  }

  /** Server shutdown, last phase: any request still pending gets its "Cancelled" frame now. */
  cancelRemaining(message: string): void {
    for (const request of [...this.#pending.values()]) this.#finish(request, cancelled(message));
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

  readonly #onMessage = (value: unknown, frameBytes?: number): void => {
    const message: ClientMessage = parseClientMessage(value);
    if (message.type === "cancel") {
      const request = this.#pending.get(message.id);
      // A cancel for an id not in flight is expected (it may have just finished): ignore it.
      if (request) this.#abort(request, "request cancelled by the client");
      return;
    }
    if (this.#pending.has(message.id)) {
      throw new ProtocolViolationError(
        "duplicate-id",
        `request id ${JSON.stringify(message.id.length > 64 ? `${message.id.slice(0, 64)}…` : message.id)} is already in flight`,
      );
    }
    if (this.#context.shuttingDown) {
      this.#send(message.id, {
        ok: false,
        error: { type: "ShuttingDown", message: "the server is shutting down and accepts no new requests" },
      });
      return;
    }
    const request: PendingRequest = {
      id: message.id,
      bytes: frameBytes ?? 0,
      cancellation: new Cancellation(),
      waiter: undefined,
      done: false,
    };
    this.#pending.set(request.id, request);
    this.#pendingBytes += request.bytes;
    this.#context.requestAccepted();
    void this.#start(request, message.payload);
    this.#updateFlow();
  };

  /** Validates the request, then runs it now or once a concurrency slot frees up. */
  async #start(request: PendingRequest, payload: unknown): Promise<void> {
    const validated = await validateRequest(this.#context.app, payload);
    if (request.done) return;
    if (!validated.ok) {
      this.#finish(request, validated);
      return;
    }
    if (request.cancellation.aborted) {
      this.#finish(request, cancelled(request.cancellation.message));
      return;
    }
    const limiter = this.#context.limiter;
    if (limiter.tryAcquire()) {
      await this.#execute(request, validated.payload);
    } else {
      request.waiter = limiter.enqueue(() => {
        request.waiter = undefined;
        void this.#execute(request, validated.payload);
      });
    }
  }

  /** Runs execute holding a slot, which it releases whatever happens. */
  async #execute(request: PendingRequest, input: unknown): Promise<void> {
    let outcome: Outcome;
    try {
      outcome = await execute(this.#context.app, input, request.id, request.cancellation);
    } finally {
      this.#context.limiter.release();
    }
    this.#finish(request, outcome);
  }

  #abort(request: PendingRequest, message: string): void {
    request.cancellation.abort(message);
    if (request.waiter) {
      // Never started: it frees no slot and ends now.
      this.#context.limiter.cancel(request.waiter);
      request.waiter = undefined;
      this.#finish(request, cancelled(request.cancellation.message));
    }
  }

  #finish(request: PendingRequest, outcome: Outcome): void {
    if (request.done) return;
    request.done = true;
    this.#pending.delete(request.id);
    this.#pendingBytes -= request.bytes;
    this.#context.requestSettled();
    if (this.#state === "open" || this.#state === "draining") {
      this.#send(request.id, outcome);
      this.#updateFlow();
      this.#endIfIdle();
    }
  }

  #send(id: string, outcome: Outcome): void {
    let frame: Buffer;
    try {
      frame = encodeFrame(
        outcome.ok
          ? // JSON has no undefined: a schema whose output is undefined (z.void()) answers null.
            { type: "response", id, payload: outcome.payload === undefined ? null : outcome.payload }
          : { type: "error", id, error: outcome.error },
        this.#context.maxFrameBytes,
      );
    } catch (error) {
      frame = this.#encodeFallback(id, outcome, error);
    }
    if (!this.#corked) {
      // Responses finished in the same tick leave in one writev.
      this.#corked = true;
      this.#socket.cork();
      process.nextTick(this.#uncork);
    }
    this.#socket.write(frame);
  }

  #encodeFallback(id: string, outcome: Outcome, cause: unknown): Buffer {
    const tooLarge = cause instanceof ProtocolViolationError;
    const error: RemoteError = outcome.ok
      ? tooLarge
        ? { type: "ResponseTooLarge", message: `${cause.message} (the response payload)` }
        : {
            type: "ResponseSerializationError",
            message: `response is not JSON-serialisable: ${errorText(cause)}`,
          }
      : // The error itself did not encode: its details are the likely culprit.
        { type: outcome.error.type, message: outcome.error.message };
    try {
      return encodeFrame({ type: "error", id, error }, this.#context.maxFrameBytes);
    } catch {
      return encodeFrame({
        type: "error",
        id,
        error: { type: error.type, message: "error too large to send" },
      });
    }
  }

  readonly #uncork = (): void => {
    this.#corked = false;
    this.#socket.uncork();
  };

  /**
   * Pauses reading while this connection holds too much work or unread output, and resumes once all
   * three are back under half their limit (the gap keeps it from flapping once per frame).
   */
  readonly #updateFlow = (): void => {
    if (this.#state === "closed" || this.#state === "closing") return;
    const context = this.#context;
    if (!this.#readPaused) {
      if (
        this.#pending.size >= context.maxPendingRequests ||
        this.#pendingBytes >= context.maxPendingBytes ||
        this.#socket.writableLength >= context.maxOutboundBytes
      ) {
        this.#readPaused = true;
        this.#reader.pause();
      }
    } else if (
      this.#pending.size <= context.maxPendingRequests >>> 1 &&
      this.#pendingBytes <= context.maxPendingBytes / 2 &&
      this.#socket.writableLength <= context.maxOutboundBytes >>> 1
    ) {
      this.#readPaused = false;
      this.#reader.resume();
    }
  };

  #endIfIdle(): void {
    if (this.#state === "draining" && this.#pending.size === 0) this.#end();
  }

  #end(): void {
    if (this.#state === "closing" || this.#state === "closed") return;
    this.#state = "closing";
    this.#reader.dispose();
    if (this.#corked) this.#uncork();
    this.#socket.end();
  }

  readonly #onViolation = (error: ProtocolViolationError): void => {
    this.#context.log(
      `connection ${this.id}: protocol violation (${error.reason}): ${error.message}; closing it`,
    );
    this.#socket.destroy();
  };

  readonly #onEnd = (): void => {
    // The client ended its side. A half-closed client cannot be told from a gone one until a write
    // fails, so its work stops now rather than running for nobody (node ends our side in turn).
    if (this.#state === "open" || this.#state === "draining") this.#state = "closing";
    this.#reader.dispose();
    for (const request of this.#pending.values()) this.#abort(request, "the client connection closed");
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
    // Nobody is left to answer: stop the work. Results that still arrive are dropped.
    for (const request of this.#pending.values()) this.#abort(request, "the client connection closed");
    this.#context.connectionClosed(this);
  };
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
