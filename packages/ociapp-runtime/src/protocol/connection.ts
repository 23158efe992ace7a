import type { Socket } from "node:net";
import {
  type AppHelloMessage,
  type Capability,
  encodeFrame,
  type HostHelloMessage,
  type Limits,
  type LogMessage,
  MessageReader,
  PROTOCOL_VERSION,
  ProtocolViolationError,
  parseAppMessage,
} from "ociapp/protocol";
import { RemoteExecutionError } from "../errors.js";
import type { Call } from "../pool/call.js";
import type { ReceiveBudget } from "./receive-budget.js";

export interface ConnectionEvents {
  /** The app's hello frame arrived: the container is ready. */
  onHello(hello: AppHelloMessage): void;
  /** A final frame arrived for `call` (already settled if its caller gave up): its slot is free. */
  onFinal(call: Call): void;
  /**
   * The app answered "ShuttingDown": it is draining (something other than this host signalled it)
   * and never ran the request. Called before onFinal; the call is left unsettled for the owner.
   */
  onRefused(call: Call): void;
  /**
   * The app answered "Cancelled" for a call this host never cancelled (the call is still unsettled):
   * something else is shutting the container down. Called before onFinal; the owner settles it.
   */
  onUnaskedCancel(call: Call): void;
  /** The connection is over: a violation by the container, or the stream ended or failed. */
  onEnd(violation: ProtocolViolationError | undefined, cause: unknown): void;
  /** A log frame from the app (only when `logRecords` was asked for). */
  onLog?(message: LogMessage): void;
}

export interface ConnectionOptions {
  /** What this side enforces on frames from the container, announced in the host hello. */
  limits: Limits;
  frameTimeoutMs: number;
  /** The runtime-wide bound on partly received frames, shared by every connection. */
  budget: ReceiveBudget;
  /** Ask the app for its console lines during execute as log frames (the runtime has a logs sink). */
  logRecords: boolean;
}

/** Frames written in one tick are copied into one buffer up to this size (larger ones go as a writev). */
const MAX_COALESCED_BYTES = 64 * 1024;

/** What the runtime announces it uses (docs/protocol-v2.md: capabilities). */
const HOST_CAPABILITIES: Capability[] = ["cancel", "ping"];

/** Ping ids: "~" never appears in call ids (base 36), so the two id spaces cannot collide. */
const PING_PREFIX = "~p";

interface PendingPing {
  resolve: () => void;
  reject: (error: Error) => void;
}

/**
 * A multiplexing protocol v2 client on one container's connection: many requests in flight, answered
 * in any order and matched by id. It sends the host hello at once and expects the app's hello as the
 * first frame. Every read is bounded (frame size, depth and values checked on the bytes before
 * parsing, frame timeout), and the container is trusted with nothing: a frame for an id that is not in
 * flight, a second hello, or any malformed frame ends the connection. Writes issued in one tick
 * leave in one syscall, as one buffer (see write).
 */
export class Connection {
  /** Requests sent and not yet answered by a final frame, cancelled ones included. */
  readonly pending = new Map<string, Call>();
  hello: AppHelloMessage | undefined;
  /** Why the connection ended, once it has. */
  endedBy: ProtocolViolationError | "closed" | undefined;
  private readonly reader: MessageReader;
  private readonly budget: ReceiveBudget;
  private readonly resumeReading = (): void => this.reader.resume();
  private readonly pings = new Map<string, PendingPing>();
  private pingCounter = 0;
  private ended = false;
  private flushing = false;
  private refed = false;
  /** Frames written in this tick, sent together by flush. */
  private outbox: Buffer[] = [];
  private outboxBytes = 0;

  constructor(
    private readonly socket: Socket,
    options: ConnectionOptions,
    private readonly events: ConnectionEvents,
  ) {
    this.reader = new MessageReader(socket, {
      maxFrameBytes: options.limits.maxFrameBytes,
      maxDepth: options.limits.maxDepth,
      maxValues: options.limits.maxValues,
      frameTimeoutMs: options.frameTimeoutMs,
      onMessage: (value) => this.onMessage(value),
      onViolation: (violation) => this.end(violation, undefined),
    });
    // After the reader's own listener: by then it has taken the chunk, and says what it holds.
    this.budget = options.budget;
    socket.on("data", () => {
      if (!this.budget.update(this, this.reader.bufferedBytes, this.resumeReading)) this.reader.pause();
    });
    socket.on("error", (error) => this.end(undefined, error));
    socket.on("close", () => this.end(undefined, undefined));
    socket.on("end", () => this.end(undefined, undefined));
    // Idle connections do not keep the host process alive; requests in flight do.
    socket.unref();
    const hello: HostHelloMessage = {
      type: "hello",
      protocol: PROTOCOL_VERSION,
      role: "host",
      limits: options.limits,
      capabilities: HOST_CAPABILITIES,
      logRecords: options.logRecords,
    };
    socket.write(encodeFrame(hello));
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /** While a frame is partly received: the bytes read from the socket so far; else -1. */
  receiving(): number {
    return !this.ended && this.reader.bufferedBytes > 0 ? this.socket.bytesRead : -1;
  }

  /** Writes the call's request frame. The caller has checked there is a free slot. */
  send(call: Call): void {
    this.pending.set(call.id, call);
    this.hold();
    this.write(call.frame);
  }

  /** Asks the container to stop working on a request; its final frame is still awaited. */
  cancel(id: string): void {
    if (this.ended || !this.pending.has(id)) return;
    this.write(encodeFrame({ type: "cancel", id }));
  }

  /**
   * Sends a ping and resolves at its pong: the app has dispatched everything sent before it. With
   * `prime` (only when the app listed the "prime" capability) its prime() hook runs first. Rejects
   * with RemoteExecutionError when the hook threw, or an Error when the connection ends first.
   */
  ping(prime = false): Promise<void> {
    if (this.ended) return Promise.reject(new Error("the connection has ended"));
    const id = `${PING_PREFIX}${(++this.pingCounter).toString(36)}`;
    return new Promise<void>((resolve, reject) => {
      this.pings.set(id, { resolve, reject });
      this.hold();
      const usePrime = prime && this.hello?.capabilities.includes("prime") === true;
      this.write(encodeFrame(usePrime ? { type: "ping", id, prime: true } : { type: "ping", id }));
    });
  }

  /** Writes the frames of this tick as one buffer: one stream write, one syscall. */
  flush(): void {
    this.flushing = false;
    const outbox = this.outbox;
    const bytes = this.outboxBytes;
    this.outbox = [];
    this.outboxBytes = 0;
    if (this.ended || outbox.length === 0) return;
    if (outbox.length === 1) this.socket.write(outbox[0] as Buffer);
    else if (bytes <= MAX_COALESCED_BYTES) this.socket.write(Buffer.concat(outbox, bytes));
    else {
      this.socket.cork();
      for (const frame of outbox) this.socket.write(frame);
      this.socket.uncork();
    }
  }

  /** Closes the connection; pending calls are the owner's to fail. */
  destroy(): void {
    if (this.ended) return;
    this.ended = true;
    this.budget.release(this);
    this.reader.dispose();
    this.socket.destroy();
    this.failPings();
  }

  /**
   * Queues a frame for this tick's flush. Copying small frames into one buffer costs less than a
   * stream write per frame (cork and writev still pay the stream's bookkeeping for each chunk).
   */
  private write(frame: Buffer): void {
    this.outbox.push(frame);
    this.outboxBytes += frame.length;
    if (!this.flushing) {
      this.flushing = true;
      process.nextTick(flushConnection, this);
    }
  }

  /** Something awaits an answer: the socket keeps the process alive until it comes. */
  private hold(): void {
    if (!this.refed) {
      this.refed = true;
      this.socket.ref();
    }
  }

  private release(): void {
    if (this.refed && this.pending.size === 0 && this.pings.size === 0) {
      this.refed = false;
      this.socket.unref();
    }
  }

  private onMessage(value: unknown): void {
    const message = parseAppMessage(value);
    if (message.type === "hello") {
      if (this.hello) throw new ProtocolViolationError("unexpected-hello", "a second hello frame");
      this.hello = message;
      this.events.onHello(message);
      return;
    }
    if (!this.hello) {
      throw new ProtocolViolationError("missing-hello", `a ${message.type} frame before the app's hello`);
    }
    if (message.type === "log") {
      // Unasked-for log frames are ignored (bounded like any frame); the rest go to the sink.
      this.events.onLog?.(message);
      return;
    }
    if (message.type === "pong" || (message.type === "error" && this.pings.has(message.id))) {
      const ping = this.pings.get(message.id);
      if (ping === undefined) {
        throw new ProtocolViolationError("unknown-id", "a pong for a ping that is not in flight");
      }
      this.pings.delete(message.id);
      this.release();
      if (message.type === "pong") ping.resolve();
      else ping.reject(new RemoteExecutionError(message.error));
      return;
    }
    const call = this.pending.get(message.id);
    if (call === undefined) {
      throw new ProtocolViolationError(
        "unknown-id",
        `a ${message.type} frame for id ${JSON.stringify(message.id).slice(0, 80)}, which is not in flight`,
      );
    }
    this.pending.delete(message.id);
    this.release();
    if (message.type === "response") call.succeed(message.payload);
    else if (message.error.type === "ShuttingDown") this.events.onRefused(call);
    else if (message.error.type === "Cancelled" && !call.settled) this.events.onUnaskedCancel(call);
    else call.fail(new RemoteExecutionError(message.error));
    this.events.onFinal(call);
  }

  private failPings(): void {
    const pings = [...this.pings.values()];
    this.pings.clear();
    for (const ping of pings) ping.reject(new Error("the connection ended before the pong"));
  }

  private end(violation: ProtocolViolationError | undefined, cause: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.endedBy = violation ?? "closed";
    this.budget.release(this);
    this.reader.dispose();
    this.socket.destroy();
    this.failPings();
    this.events.onEnd(violation, cause);
  }
}

function flushConnection(connection: Connection): void {
  connection.flush();
}
