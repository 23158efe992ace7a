import type { ExecutionContext } from "../application.js";
import type { LogLevel, TraceContext } from "../protocol/messages.js";
import type { Waiter } from "./limiter.js";

/** What a request calls back into. */
export interface RequestOwner {
  /** The limiter handed the request a slot. */
  runQueued(request: ServerRequest): void;
  /** A console line its execute wrote (log records on): false when it must go to stdout/stderr. */
  log(request: ServerRequest, level: LogLevel, text: string): boolean;
}

/**
 * One request in flight on a connection: its bookkeeping, its cancellation state, its place in the
 * limiter's queue, and the context execute receives, in one object (a request is the warm path's
 * unit of work, and every allocation on it shows up in a profile).
 *
 * The AbortSignal is created only when execute reads context.signal: an AbortController per request
 * costs more than a whole echo round trip otherwise.
 */
export class ServerRequest implements ExecutionContext, Waiter {
  readonly requestId: string;
  /** Body size of the request's frame, counted against the connection's pending bytes. */
  readonly bytes: number;
  /** The validated request, kept while the request waits for a slot. */
  input: unknown;
  /** true while the request waits in the limiter's queue. */
  queued = false;
  /** true once its final frame has been decided. */
  done = false;
  /** A prime request: the path runs on the prime sample, never execute. */
  prime = false;
  /** From the request frame's trace, when well-formed. */
  trace: TraceContext | undefined = undefined;
  readonly #owner: RequestOwner;
  #controller: AbortController | undefined;
  #reason: Error | undefined;

  constructor(owner: RequestOwner, requestId: string, bytes: number) {
    this.#owner = owner;
    this.requestId = requestId;
    this.bytes = bytes;
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#reason !== undefined) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  get aborted(): boolean {
    return this.#reason !== undefined;
  }

  /** Why it was aborted, for its "Cancelled" frame. */
  get abortMessage(): string {
    return this.#reason?.message ?? "request cancelled";
  }

  abort(message: string): void {
    if (this.#reason !== undefined) return;
    this.#reason = new DOMException(message, "AbortError");
    this.#controller?.abort(this.#reason);
  }

  /** Called by the limiter once the request holds a slot. */
  run(): void {
    this.#owner.runQueued(this);
  }

  /** Called by the patched console (log records): false once the request has its final frame. */
  writeLog(level: LogLevel, text: string): boolean {
    return !this.done && this.#owner.log(this, level, text);
  }
}
