import type { z } from "zod";
import type { TraceContext } from "./protocol/messages.js";

/**
 * The brand that marks an Application. It is registered with Symbol.for so that two copies of the
 * SDK (a source and a dist build, or two installs in one image) recognise each other's apps, where
 * instanceof would not.
 */
export const APPLICATION_BRAND: unique symbol = Symbol.for("dev.ociapp.application") as never;

/** What execute receives besides the request. */
export interface ExecutionContext {
  /** The id the host gave this request; unique among the requests in flight on its connection. */
  readonly requestId: string;
  /** Aborted when the host cancels the request, its connection closes, or the server shuts down. */
  readonly signal: AbortSignal;
  /**
   * The request's W3C trace context (https://www.w3.org/TR/trace-context/), when the host sent a
   * well-formed one: `traceparent` is "00-<trace id>-<parent id>-<flags>" in lowercase hex,
   * `tracestate` at most 512 chars (ociapp-runtime with telemetry on sends its caller's active span
   * context: the parent id is the caller's span). Pass it on to the spans or outgoing calls the app makes.
   */
  readonly trace?: TraceContext | undefined;
}

/**
 * What a prime() hook may return besides nothing: a request and the response execute would give for
 * it (both as the schemas take them), which the server's request path is primed with.
 */
export interface PrimeSample<Req extends z.ZodType = z.ZodType, Res extends z.ZodType = z.ZodType> {
  request: z.input<Req>;
  response: z.input<Res>;
}

/**
 * An application served by `ociapp serve`. Subclasses declare a zod schema for the request and the
 * response: the request is parsed before execute (a failure answers "ValidationError") and the value
 * execute returns is parsed after it (a failure answers "ResponseValidationError").
 *
 * zod is a peer dependency used for types only: the schemas are the app's own objects, so the app's
 * copy of zod does the parsing.
 */
export abstract class Application<Req extends z.ZodType = z.ZodType, Res extends z.ZodType = z.ZodType> {
  declare readonly [APPLICATION_BRAND]: true;

  abstract readonly request: Req;
  abstract readonly response: Res;
  /**
   * Optional name and version, announced to clients in the hello frame. Declared only (nothing is
   * emitted), so the base class defines no own properties that would shadow a subclass's accessors.
   */
  declare readonly name?: string;
  declare readonly version?: string;
  /**
   * When true, error frames carry the thrown error's stack (at most 16 KiB, control characters other
   * than \n and \t escaped as \u00XX). Default false: a stack shows the app's file layout and code
   * to whoever reads the host's errors, so the app opts in.
   */
  declare readonly errorStacks?: boolean;

  /**
   * Optional warm-up, run once per process when the host pings with `prime: true` (a runtime does so
   * before a container takes its first real call). Its purpose is to take the first-call cost off
   * the first request: load lazy imports, fill caches, and return a sample request with the response
   * execute would give for it. The server then runs its request path on that sample about 2,000
   * times (at most 250 ms), with the request and response schemas but never execute, so V8 has
   * compiled and optimised the path, schemas included, before the first call. Without a sample (or
   * without this method) the path runs with schemas that take anything. It runs app code, so it is
   * opt-in. A throw or rejection answers the ping with a "PrimeError" and the app keeps serving;
   * later prime pings do not run it again.
   */
  // biome-ignore lint/suspicious/noConfusingVoidType: a hook with no return statement returns void (Promise<void> when async), which undefined would refuse.
  prime?(): void | PrimeSample<Req, Res> | Promise<void | PrimeSample<Req, Res>>;

  abstract execute(request: z.output<Req>, context: ExecutionContext): Promise<z.input<Res>> | z.input<Res>;
}

Object.defineProperty(Application.prototype, APPLICATION_BRAND, { value: true, enumerable: false });

// `x instanceof Application` holds for apps of any copy of the SDK; subclasses keep the usual check.
Object.defineProperty(Application, Symbol.hasInstance, {
  value: function hasInstance(this: unknown, value: unknown): boolean {
    if (this === Application) return isApplication(value);
    return Function.prototype[Symbol.hasInstance].call(this, value);
  },
});

/** Any Application, whatever its schemas. */
export type AnyApplication = Application<z.ZodType, z.ZodType>;

/** true when value is an Application built with any copy of this SDK. */
export function isApplication(value: unknown): value is AnyApplication {
  return (
    typeof value === "object" &&
    value !== null &&
    (value as { [APPLICATION_BRAND]?: unknown })[APPLICATION_BRAND] === true
  );
}
