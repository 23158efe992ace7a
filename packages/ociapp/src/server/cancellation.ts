import type { ExecutionContext } from "../application.js";

/**
 * A request's cancellation state. The AbortSignal is created only when execute reads
 * context.signal: creating one per request costs more than a whole echo round trip otherwise.
 */
export class Cancellation {
  #controller: AbortController | undefined;
  #reason: Error | undefined;

  get aborted(): boolean {
    return this.#reason !== undefined;
  }

  get message(): string {
    return this.#reason?.message ?? "request cancelled";
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#reason !== undefined) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  abort(message: string): void {
    if (this.#reason !== undefined) return;
    this.#reason = new DOMException(message, "AbortError");
    this.#controller?.abort(this.#reason);
  }
}

/** The context handed to execute; its signal is created on first read. */
export class RequestContext implements ExecutionContext {
  readonly requestId: string;
  readonly #cancellation: Cancellation;

  constructor(requestId: string, cancellation: Cancellation) {
    this.requestId = requestId;
    this.#cancellation = cancellation;
  }

  get signal(): AbortSignal {
    return this.#cancellation.signal;
  }
}
