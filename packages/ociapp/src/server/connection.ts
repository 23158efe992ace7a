import type { Socket } from "node:net";
import type { AnyApplication } from "../application.js";
import { FRAME_HEADER_BYTES } from "../protocol/constants.js";
import { encodeFrame, encodeJsonFrame } from "../protocol/frame.js";
import { type ClientMessage, parseClientMessage, type RemoteError } from "../protocol/messages.js";
import { MessageReader } from "../protocol/reader.js";
import { ProtocolViolationError } from "../protocol/violation.js";
import {
  cancelledError,
  isThenable,
  type ParseResult,
  type SchemaParser,
  thrownError,
  validationError,
} from "./invoke.js";
import type { ConcurrencyLimiter } from "./limiter.js";
import { type RequestOwner, ServerRequest } from "./request.js";

/** What a connection needs from its server. */
export interface ConnectionContext {
  readonly app: AnyApplication;
  readonly limiter: ConcurrencyLimiter;
  /** The app's request and response schemas. */
  readonly requestParser: SchemaParser;
  readonly responseParser: SchemaParser;
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

/** Up to this many bytes of frames are copied into one buffer per write. */
const MAX_COALESCED_BYTES = 256 * 1024;
/** Responses of up to this many JSON characters are encoded into the connection's batch buffer. */
const BATCHED_JSON_CHARS = 1024;
/** Size of a batch buffer: room for at least 5 of the largest batched frames. */
const BATCH_BYTES = 16 * 1024;
const EMPTY_BATCH = Buffer.alloc(0);

export class Connection implements RequestOwner {
  readonly id: number;
  readonly #socket: Socket;
  readonly #context: ConnectionContext;
  readonly #reader: MessageReader;
  readonly #pending = new Map<string, ServerRequest>();
  #pendingBytes = 0;
  #state: ConnectionState = "open";
  #readPaused = false;
  /** Frames finished in this tick, written together by #flush (one write per tick, not per frame). */
  #outbox: Buffer[] = [];
  #outboxBytes = 0;
  #flushScheduled = false;
  /** Small frames are encoded into this buffer; [#batchStart, #batchEnd) is not yet in the outbox. */
  #batch: Buffer = EMPTY_BATCH;
  #batchStart = 0;
  #batchEnd = 0;

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
    return this.#socket.writableLength + this.#outboxBytes + (this.#batchEnd - this.#batchStart);
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
    for (const request of [...this.#pending.values()]) this.#finish(request, false, cancelledError(message));
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
      this.#send(message.id, false, {
        type: "ShuttingDown",
        message: "the server is shutting down and accepts no new requests",
      });
      return;
    }
    const request = new ServerRequest(this, message.id, frameBytes ?? 0);
    this.#pending.set(request.requestId, request);
    this.#pendingBytes += request.bytes;
    this.#context.requestAccepted();
    let parsed: ParseResult | Promise<ParseResult>;
    try {
      parsed = this.#context.requestParser.parse(message.payload);
    } catch (error) {
      this.#finish(request, false, thrownError(error, "request validation"));
      return;
    }
    if (isThenable(parsed)) void this.#awaitValidation(request, parsed);
    else this.#start(request, parsed);
    this.#updateFlow();
  };

  async #awaitValidation(request: ServerRequest, parsing: Promise<ParseResult>): Promise<void> {
    let parsed: ParseResult;
    try {
      parsed = await parsing;
    } catch (error) {
      this.#finish(request, false, thrownError(error, "request validation"));
      return;
    }
    this.#start(request, parsed);
  }

  /** Runs a validated request now, or once a concurrency slot frees up. */
  #start(request: ServerRequest, parsed: ParseResult): void {
    if (request.done) return;
    if (!parsed.success) {
      this.#finish(request, false, validationError("ValidationError", "request", parsed.error?.issues));
      return;
    }
    if (request.aborted) {
      this.#finish(request, false, cancelledError(request.abortMessage));
      return;
    }
    request.input = parsed.data;
    const limiter = this.#context.limiter;
    if (limiter.tryAcquire()) this.#run(request);
    else limiter.enqueue(request);
  }

  /** The limiter gave a queued request its slot. */
  runQueued(request: ServerRequest): void {
    this.#run(request);
  }

  /**
   * Calls execute holding a slot. A synchronous result is handled at once; only a thenable costs an
   * await. Every path ends in #settle, which releases the slot.
   */
  #run(request: ServerRequest): void {
    const input = request.input;
    request.input = undefined;
    let result: unknown;
    try {
      result = this.#context.app.execute(input, request);
    } catch (error) {
      this.#settle(request, false, thrownError(error, "execute"));
      return;
    }
    if (isThenable(result)) void this.#awaitResult(request, result);
    else this.#validateResponse(request, result);
  }

  async #awaitResult(request: ServerRequest, pending: PromiseLike<unknown>): Promise<void> {
    let result: unknown;
    try {
      result = await pending;
    } catch (error) {
      this.#settle(request, false, thrownError(error, "execute"));
      return;
    }
    this.#validateResponse(request, result);
  }

  #validateResponse(request: ServerRequest, result: unknown): void {
    if (request.aborted) {
      this.#settle(request, false, cancelledError(request.abortMessage));
      return;
    }
    let parsed: ParseResult | Promise<ParseResult>;
    try {
      parsed = this.#context.responseParser.parse(result);
    } catch (error) {
      this.#settle(request, false, thrownError(error, "response validation"));
      return;
    }
    if (isThenable(parsed)) void this.#awaitResponse(request, parsed);
    else this.#responseParsed(request, parsed);
  }

  async #awaitResponse(request: ServerRequest, parsing: Promise<ParseResult>): Promise<void> {
    let parsed: ParseResult;
    try {
      parsed = await parsing;
    } catch (error) {
      this.#settle(request, false, thrownError(error, "response validation"));
      return;
    }
    this.#responseParsed(request, parsed);
  }

  #responseParsed(request: ServerRequest, parsed: ParseResult): void {
    if (parsed.success) this.#settle(request, true, parsed.data);
    else
      this.#settle(
        request,
        false,
        validationError("ResponseValidationError", "response", parsed.error?.issues),
      );
  }

  /** Ends a request that held a slot: its final frame, then the slot goes to the next waiter. */
  #settle(request: ServerRequest, ok: boolean, value: unknown): void {
    // An execute that failed after a cancel ended because of it.
    if (!ok && request.aborted) value = cancelledError(request.abortMessage);
    this.#finish(request, ok, value);
    this.#context.limiter.release();
  }

  #abort(request: ServerRequest, message: string): void {
    request.abort(message);
    if (request.queued) {
      // Never started: it frees no slot and ends now.
      this.#context.limiter.cancel(request);
      this.#finish(request, false, cancelledError(request.abortMessage));
    }
  }

  /** value is the response payload when ok, else the RemoteError. */
  #finish(request: ServerRequest, ok: boolean, value: unknown): void {
    if (request.done) return;
    request.done = true;
    request.input = undefined;
    this.#pending.delete(request.requestId);
    this.#pendingBytes -= request.bytes;
    this.#context.requestSettled();
    if (this.#state === "open" || this.#state === "draining") {
      this.#send(request.requestId, ok, value);
      this.#updateFlow();
      this.#endIfIdle();
    }
  }

  #send(id: string, ok: boolean, value: unknown): void {
    const message = ok
      ? // JSON has no undefined: a schema whose output is undefined (z.void()) answers null.
        { type: "response", id, payload: value === undefined ? null : value }
      : { type: "error", id, error: value };
    let frame: Buffer;
    try {
      const json: string | undefined = JSON.stringify(message);
      if (typeof json !== "string") throw new TypeError("message is not JSON-serialisable");
      if (json.length <= BATCHED_JSON_CHARS && this.#appendToBatch(json)) return;
      frame = encodeJsonFrame(json, this.#context.maxFrameBytes);
    } catch (error) {
      frame = this.#encodeFallback(id, ok, value, error);
    }
    this.#sealBatch();
    this.#outbox.push(frame);
    this.#outboxBytes += frame.length;
    this.#scheduleFlush();
  }

  /**
   * Encodes a small frame straight into the batch buffer, behind the frames already there: no buffer
   * per frame and no copy at flush. false when it is over maxFrameBytes (the caller's path reports it).
   */
  #appendToBatch(json: string): boolean {
    const room = FRAME_HEADER_BYTES + json.length * 3;
    if (this.#batch.length - this.#batchEnd < room) {
      this.#sealBatch();
      // The old buffer stays referenced by the writes it was handed to; frames go to a new one.
      this.#batch = Buffer.allocUnsafe(BATCH_BYTES);
      this.#batchStart = 0;
      this.#batchEnd = 0;
    }
    const start = this.#batchEnd;
    const written = this.#batch.write(json, start + FRAME_HEADER_BYTES, "utf8");
    if (written > this.#context.maxFrameBytes) return false;
    this.#batch.writeUInt32BE(written, start);
    this.#batchEnd = start + FRAME_HEADER_BYTES + written;
    this.#scheduleFlush();
    return true;
  }

  /** Moves the batch's unsent frames to the outbox, as one buffer that shares the batch's memory. */
  #sealBatch(): void {
    if (this.#batchEnd === this.#batchStart) return;
    const frames = this.#batch.subarray(this.#batchStart, this.#batchEnd);
    this.#batchStart = this.#batchEnd;
    this.#outbox.push(frames);
    this.#outboxBytes += frames.length;
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    process.nextTick(this.#flush);
  }

  #encodeFallback(id: string, ok: boolean, value: unknown, cause: unknown): Buffer {
    const tooLarge = cause instanceof ProtocolViolationError;
    const failed = value as RemoteError;
    const error: RemoteError = ok
      ? tooLarge
        ? { type: "ResponseTooLarge", message: `${cause.message} (the response payload)` }
        : {
            type: "ResponseSerializationError",
            message: `response is not JSON-serialisable: ${errorText(cause)}`,
          }
      : // The error itself did not encode: its details are the likely culprit.
        { type: failed.type, message: failed.message };
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

  /**
   * Writes the frames finished in this tick as one buffer. Copying small frames into one is cheaper
   * than a stream write per frame (cork and writev still pay the stream's bookkeeping per chunk).
   */
  readonly #flush = (): void => {
    this.#flushScheduled = false;
    this.#sealBatch();
    const outbox = this.#outbox;
    if (outbox.length === 0) return;
    const bytes = this.#outboxBytes;
    this.#outbox = [];
    this.#outboxBytes = 0;
    const socket = this.#socket;
    if (socket.destroyed || socket.writableEnded) return;
    if (outbox.length === 1) socket.write(outbox[0]!);
    else if (bytes <= MAX_COALESCED_BYTES) socket.write(Buffer.concat(outbox, bytes));
    else {
      // Large frames are not worth copying: one writev instead.
      socket.cork();
      for (const frame of outbox) socket.write(frame);
      socket.uncork();
    }
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
        this.outboundBytes >= context.maxOutboundBytes
      ) {
        this.#readPaused = true;
        this.#reader.pause();
      }
    } else if (
      this.#pending.size <= context.maxPendingRequests >>> 1 &&
      this.#pendingBytes <= context.maxPendingBytes / 2 &&
      this.outboundBytes <= context.maxOutboundBytes >>> 1
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
    this.#flush();
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
