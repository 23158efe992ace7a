import type { AsyncLocalStorage } from "node:async_hooks";
import type { AnyApplication } from "../application.js";
import type { LogLevel } from "../protocol/messages.js";
import {
  cancelledError,
  isThenable,
  type ParseResult,
  type SchemaParser,
  thrownError,
  validationError,
} from "./invoke.js";
import type { ConcurrencyLimiter } from "./limiter.js";
import type { LogTarget } from "./log-records.js";
import type { PrimeSample } from "./prime-path.js";
import type { RequestOwner, ServerRequest } from "./request.js";

/** A prime request's schema step when the app gave no sample: nothing checked, null answered. */
const SKIPPED: ParseResult = { success: true, data: null };

/** What the runner needs from the server: the app, its schemas and the process-wide limiter. */
export interface RunnerContext {
  readonly app: AnyApplication;
  readonly limiter: ConcurrencyLimiter;
  readonly requestParser: SchemaParser;
  readonly responseParser: SchemaParser;
  /** The app's errorStacks field: error frames carry stacks. */
  readonly errorStacks: boolean;
  /** What prime requests run on: the sample the app's prime() hook returned, once it has run. */
  readonly primeSample: PrimeSample | undefined;
}

/** What the runner needs from its connection. */
export interface RunnerOwner {
  /** The request's final frame: value is the response payload when ok, else the RemoteError. */
  finish(request: ServerRequest, ok: boolean, value: unknown): void;
  /** A console line of the request's execute, as a log frame; false when it cannot be sent. */
  log(request: ServerRequest, level: LogLevel, text: string): boolean;
}

/**
 * One connection's requests from payload to answer: request schema, a concurrency slot, execute,
 * response schema. Every step is synchronous unless a schema or execute is async: only a thenable
 * costs an await. Every path that took a slot ends in #settle, which releases it.
 */
export class RequestRunner implements RequestOwner {
  readonly #context: RunnerContext;
  readonly #owner: RunnerOwner;
  /** Set once the host asked for log records: executes then run inside it. */
  #logStorage: AsyncLocalStorage<LogTarget> | undefined;

  constructor(context: RunnerContext, owner: RunnerOwner) {
    this.#context = context;
    this.#owner = owner;
  }

  /** From now on, execute runs inside storage, so the patched console finds its request. */
  recordLogs(storage: AsyncLocalStorage<LogTarget>): void {
    this.#logStorage = storage;
  }

  /**
   * A new request with its payload: validated, then run now or once a slot frees up. A prime request
   * brings none: it runs on the prime sample's request, or skips the schemas when there is no sample.
   */
  accept(request: ServerRequest, payload: unknown): void {
    let parsed: ParseResult | Promise<ParseResult>;
    try {
      if (request.prime) {
        const sample = this.#context.primeSample;
        if (sample === undefined) {
          this.#start(request, SKIPPED);
          return;
        }
        payload = sample.request;
      }
      parsed = this.#context.requestParser.parse(payload);
    } catch (error) {
      this.#owner.finish(request, false, thrownError(error, "request validation"));
      return;
    }
    if (isThenable(parsed)) void this.#awaitValidation(request, parsed);
    else this.#start(request, parsed);
  }

  /** Aborts a request: a queued one ends "Cancelled" now; a running one when its execute returns. */
  abort(request: ServerRequest, message: string): void {
    request.abort(message);
    if (request.queued) {
      // Never started: it frees no slot and ends now.
      this.#context.limiter.cancel(request);
      this.#owner.finish(request, false, cancelledError(request.abortMessage));
    }
  }

  /** The limiter gave a queued request its slot. */
  runQueued(request: ServerRequest): void {
    this.#run(request);
  }

  log(request: ServerRequest, level: LogLevel, text: string): boolean {
    return this.#owner.log(request, level, text);
  }

  async #awaitValidation(request: ServerRequest, parsing: Promise<ParseResult>): Promise<void> {
    let parsed: ParseResult;
    try {
      parsed = await parsing;
    } catch (error) {
      this.#owner.finish(request, false, thrownError(error, "request validation"));
      return;
    }
    this.#start(request, parsed);
  }

  #start(request: ServerRequest, parsed: ParseResult): void {
    if (request.done) return;
    if (!parsed.success) {
      this.#owner.finish(request, false, validationError("ValidationError", "request", parsed.error?.issues));
      return;
    }
    if (request.aborted) {
      this.#owner.finish(request, false, cancelledError(request.abortMessage));
      return;
    }
    request.input = parsed.data;
    const limiter = this.#context.limiter;
    if (limiter.tryAcquire()) this.#run(request);
    else limiter.enqueue(request);
  }

  /** Calls execute holding a slot. */
  #run(request: ServerRequest): void {
    const input = request.input;
    request.input = undefined;
    const app = this.#context.app;
    const storage = this.#logStorage;
    if (request.prime) {
      // Never the app's execute: the sample's response stands in for what it would return.
      this.#validateResponse(request, this.#context.primeSample?.response);
      return;
    }
    let result: unknown;
    try {
      result =
        storage === undefined
          ? app.execute(input, request)
          : storage.run(request, () => app.execute(input, request));
    } catch (error) {
      this.#settle(request, false, thrownError(error, "execute", this.#context.errorStacks));
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
      this.#settle(request, false, thrownError(error, "execute", this.#context.errorStacks));
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
      if (request.prime && this.#context.primeSample === undefined) {
        this.#responseParsed(request, SKIPPED);
        return;
      }
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
    this.#owner.finish(request, ok, value);
    this.#context.limiter.release();
  }
}
