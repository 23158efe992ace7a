import type { Socket } from "node:net";
import {
  encodeFrame,
  type HelloMessage,
  MessageReader,
  PROTOCOL_VERSION,
  ProtocolViolationError,
  parseServerMessage,
} from "ociapp/protocol";
import { RemoteExecutionError } from "../errors.js";
import type { Call } from "../pool/call.js";

export interface ConnectionEvents {
  /** The hello frame arrived: the container is ready. */
  onHello(hello: HelloMessage): void;
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
}

export interface ConnectionOptions {
  maxFrameBytes: number;
  frameTimeoutMs: number;
}

/**
 * A multiplexing client on one container socket: many requests in flight, answered in any order and
 * matched by id. Every read is bounded (frame size, frame timeout), and the container is trusted
 * with nothing: a frame for an id that is not in flight, a second hello, or any malformed frame ends
 * the connection. Writes issued in one tick leave in one syscall (cork until the next tick).
 */
export class Connection {
  /** Requests sent and not yet answered by a final frame, cancelled ones included. */
  readonly pending = new Map<string, Call>();
  hello: HelloMessage | undefined;
  private readonly reader: MessageReader;
  private ended = false;
  /** Why the connection ended, once it has. */
  endedBy: ProtocolViolationError | "closed" | undefined;
  private corked = false;
  private refed = false;

  constructor(
    private readonly socket: Socket,
    options: ConnectionOptions,
    private readonly events: ConnectionEvents,
  ) {
    this.reader = new MessageReader(socket, {
      maxFrameBytes: options.maxFrameBytes,
      frameTimeoutMs: options.frameTimeoutMs,
      onMessage: (value) => this.onMessage(value),
      onViolation: (violation) => this.end(violation, undefined),
    });
    socket.on("error", (error) => this.end(undefined, error));
    socket.on("close", () => this.end(undefined, undefined));
    socket.on("end", () => this.end(undefined, undefined));
    // Idle connections do not keep the host process alive; requests in flight do.
    socket.unref();
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
    if (!this.refed) {
      this.refed = true;
      this.socket.ref();
    }
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(uncork, this);
    }
    this.socket.write(call.frame);
  }

  /** Asks the container to stop working on a request; its final frame is still awaited. */
  cancel(id: string): void {
    if (this.ended || !this.pending.has(id)) return;
    this.socket.write(encodeFrame({ type: "cancel", id }));
  }

  flush(): void {
    this.corked = false;
    if (!this.ended) this.socket.uncork();
  }

  /** Closes the connection; pending calls are the owner's to fail. */
  destroy(): void {
    if (this.ended) return;
    this.ended = true;
    this.reader.dispose();
    this.socket.destroy();
  }

  private onMessage(value: unknown): void {
    const message = parseServerMessage(value);
    if (message.type === "hello") {
      if (this.hello) throw new ProtocolViolationError("unexpected-hello", "a second hello frame");
      if (message.protocol !== PROTOCOL_VERSION) {
        throw new ProtocolViolationError(
          "invalid-message",
          `the container speaks protocol ${message.protocol}; this runtime speaks ${PROTOCOL_VERSION}`,
        );
      }
      this.hello = message;
      this.events.onHello(message);
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
    if (this.pending.size === 0 && this.refed) {
      this.refed = false;
      this.socket.unref();
    }
    if (message.type === "response") call.succeed(message.payload);
    else if (message.error.type === "ShuttingDown") this.events.onRefused(call);
    else if (message.error.type === "Cancelled" && !call.settled) this.events.onUnaskedCancel(call);
    else call.fail(new RemoteExecutionError(message.error));
    this.events.onFinal(call);
  }

  private end(violation: ProtocolViolationError | undefined, cause: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.endedBy = violation ?? "closed";
    this.reader.dispose();
    this.socket.destroy();
    this.events.onEnd(violation, cause);
  }
}

function uncork(connection: Connection): void {
  connection.flush();
}
