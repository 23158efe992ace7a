import {
  type Attributes,
  type Context,
  INVALID_SPANID,
  INVALID_TRACEID,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  type SpanOptions,
  SpanStatusCode,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { MAX_TRACESTATE_CHARS } from "ociapp/protocol";
import type { ArtifactRef, CallSettledMessage } from "./channels.js";
import { ATTR, type Instruments, type TelemetrySource } from "./telemetry-metrics.js";

/** Span names: one `ociapp.execute` per call, and a child per phase the call went through. */
export const SPANS = {
  /**
   * Kind CLIENT, from execute() to the call settling, a child of the caller's active span. Created
   * once the call has settled (its start time the call's), so the app gets the caller's context.
   */
  execute: "ociapp.execute",
  /** The call waited in its artifact's queue: from queued to sent (or settled, never sent). */
  queue: "ociapp.queue",
  /** The artifact's image was streamed to the engine while the call waited. */
  imageLoad: "ociapp.image.load",
  /**
   * The container the call went to started while it waited: from the pool's start (or the end of the
   * image load the call waited for) to the app's hello.
   */
  containerStart: "ociapp.container.start",
  /** The call in its container, from the request's write to the answer (for a call that waited). */
  container: "ociapp.container.call",
} as const;

/**
 * Span attributes beyond ATTR's (digest, path, outcomes). All under `ociapp.` but `error.type`, the
 * OpenTelemetry semantic conventions' own (https://opentelemetry.io/docs/specs/semconv/attributes-registry/error/).
 * Durations are milliseconds (`_ms`).
 */
export const SPAN_ATTR = {
  /** The call's id (the request id the app sees, and LogRecord.requestId). */
  callId: "ociapp.call.id",
  /** The artifact as the caller named it: a path, a manifest digest or an alias. */
  requested: "ociapp.artifact.requested",
  containerId: "ociapp.container.id",
  errorType: "error.type",
  queueWaitMs: "ociapp.call.queue_wait_ms",
  containerTimeMs: "ociapp.call.container_time_ms",
  /** The container that answered started while the call waited for it. */
  coldStart: "ociapp.call.cold_start",
  /** The artifact's image was loaded while the call waited. */
  imageLoad: "ociapp.call.image_load",
  /** Calls waiting for the artifact when this one was queued, itself included. */
  queueLength: "ociapp.queue.length",
  /** The runtime's startup figure (ociapp:container:ready): the pool's start to the hello, image wait included. */
  startupMs: "ociapp.container.startup_ms",
  sentBytes: "ociapp.image.sent_bytes",
  totalBytes: "ociapp.image.total_bytes",
} as const;

/** One reporting Runtime: its tracer and the instruments of its meter. */
export interface Registration {
  source: TelemetrySource;
  tracer: Tracer;
  instruments: Instruments;
}

/** A container between ociapp:container:started and :exited (times are performance.now()). */
export interface ContainerTrace {
  /** When the pool began starting it (the image wait included), and when its app said hello. */
  beganAt: number;
  readyAt: number;
  startupMs: number;
}

/** An image load between its "start" and its "done" or "failed". */
export interface LoadTrace {
  ref: ArtifactRef;
  startedAt: number;
  endedAt: number;
  sentBytes: number;
  totalBytes: number;
  failed: boolean;
}

/** One call between ociapp:call:created and ociapp:call:settled (times are performance.now()). */
export class CallTrace {
  queuedAt = -1;
  queueLength = 0;
  digest: string | undefined;
  containerId: string | undefined;
  /** Set when the container that took the call started while the call waited (a cold start). */
  container: ContainerTrace | undefined;
  load: LoadTrace | undefined;
  /** Its ociapp:call:settled message, until the span and metrics are recorded. */
  settled: CallSettledMessage | undefined;
  constructor(
    readonly id: string,
    readonly requested: string,
    readonly registration: Registration,
    /** The context active in execute(): the caller's span (if any) is the execute span's parent. */
    readonly parent: Context,
    readonly createdAt: number,
  ) {}
}

/** The traceparent's flags field for each value of a byte: built once, not per call. */
const FLAGS = Array.from({ length: 256 }, (_, flags) => flags.toString(16).padStart(2, "0"));

/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/): version 00, lowercase hex. Undefined for
 * an invalid span context (a no-op tracer's with no caller's span: all zeros). Ids are checked by
 * length and against all zeros only, not character by character (isSpanContextValid's two regular
 * expressions, on the call's path): the app checks the traceparent's form itself and drops a
 * malformed one (ociapp/protocol's parseTraceContext).
 */
export function traceContext(
  spanContext: SpanContext,
): { traceparent: string; tracestate?: string } | undefined {
  const { traceId, spanId } = spanContext;
  if (
    traceId.length !== 32 ||
    spanId.length !== 16 ||
    traceId === INVALID_TRACEID ||
    spanId === INVALID_SPANID
  )
    return undefined;
  const traceparent = `00-${traceId}-${spanId}-${FLAGS[spanContext.traceFlags & 0xff]}`;
  const tracestate = spanContext.traceState?.serialize();
  // The app drops a tracestate past 512 chars (ociapp/protocol); sending it would only cost bytes.
  return tracestate && tracestate.length <= MAX_TRACESTATE_CHARS
    ? { traceparent, tracestate }
    : { traceparent };
}

/**
 * Records a settled call: its metrics, and its execute span with its attributes, phases and end.
 * The span is started here, off the call's path, with the call's own start time: starting it in
 * execute() (to send its id to the app) cost about 1.9 us of the SDK's work per warm call before the
 * request was written (the runtime README's cost section). Its times come from the call's events,
 * so they are what they were when it was started in execute().
 */
export function finishCall(call: CallTrace, message: CallSettledMessage): void {
  call.registration.instruments.recordCall(
    message.artifact,
    message.outcome,
    message.settledAt - message.createdAt,
  );
  const span = startExecuteSpan(call);
  // Not recording: no SDK, or sampled out (the sampler runs here too, off the path).
  if (span.isRecording()) endSpan(call, span, message);
}

/**
 * A call that never settled (its Runtime detached first, which close() should prevent): its span
 * ends now, with no outcome.
 */
export function abandonCall(call: CallTrace): void {
  try {
    startExecuteSpan(call).end();
  } catch {
    // a faulty tracer costs its own records only, never the Runtime's close()
  }
}

function startExecuteSpan(call: CallTrace): Span {
  const options: SpanOptions = { kind: SpanKind.CLIENT, startTime: call.createdAt };
  return call.registration.tracer.startSpan(SPANS.execute, options, call.parent);
}

function endSpan(call: CallTrace, span: Span, message: CallSettledMessage): void {
  const { sentAt, settledAt, artifact, outcome } = message;
  const waitedUntil = sentAt ?? settledAt;
  // One setAttribute each: an attributes object would be built and then walked again by the SDK.
  span.setAttribute(SPAN_ATTR.callId, call.id);
  span.setAttribute(SPAN_ATTR.requested, call.requested);
  span.setAttribute(ATTR.outcome, outcome);
  span.setAttribute(SPAN_ATTR.queueWaitMs, call.queuedAt < 0 ? 0 : waitedUntil - call.queuedAt);
  span.setAttribute(SPAN_ATTR.coldStart, call.container !== undefined);
  span.setAttribute(SPAN_ATTR.imageLoad, call.load !== undefined);
  if (artifact !== undefined) {
    span.setAttribute(ATTR.digest, artifact.digest);
    span.setAttribute(ATTR.path, artifact.path);
  }
  if (call.containerId !== undefined) span.setAttribute(SPAN_ATTR.containerId, call.containerId);
  if (sentAt !== undefined) span.setAttribute(SPAN_ATTR.containerTimeMs, settledAt - sentAt);
  if (outcome !== "ok") span.setAttribute(SPAN_ATTR.errorType, outcome);

  const tracer = call.registration.tracer;
  // Built only for a call with phases: a warm call (most calls) has none.
  let parent: Context | undefined;
  const child = (name: string, start: number, end: number, attributes: Attributes, failed = false) => {
    parent ??= trace.setSpan(ROOT_CONTEXT, span);
    const phase = tracer.startSpan(name, { startTime: start, attributes }, parent);
    if (failed) phase.setStatus({ code: SpanStatusCode.ERROR });
    phase.end(end);
  };
  if (call.queuedAt >= 0) {
    child(SPANS.queue, call.queuedAt, waitedUntil, { [SPAN_ATTR.queueLength]: call.queueLength });
  }
  const load = call.load;
  if (load !== undefined) {
    child(
      SPANS.imageLoad,
      load.startedAt,
      load.endedAt,
      {
        [ATTR.digest]: load.ref.digest,
        [SPAN_ATTR.sentBytes]: load.sentBytes,
        [SPAN_ATTR.totalBytes]: load.totalBytes,
        [ATTR.loadOutcome]: load.failed ? "failed" : "ok",
      },
      load.failed,
    );
  }
  const container = call.container;
  if (container !== undefined) {
    // The runtime's startup time counts from the pool's start, image wait included: the span
    // begins once the image this call waited for was there, so it does not overlap the load's.
    const began = load === undefined ? container.beganAt : Math.max(container.beganAt, load.endedAt);
    child(SPANS.containerStart, began, container.readyAt, {
      [SPAN_ATTR.containerId]: call.containerId ?? "",
      [SPAN_ATTR.startupMs]: container.startupMs,
    });
  }
  // A call that waited gets its time in the container as a phase beside the others; a warm call
  // (sent at once) is one span, its container time an attribute: a second span per call would double
  // what tracing costs on the warm path (bench/observability.ts).
  if (sentAt !== undefined && call.queuedAt >= 0) {
    child(SPANS.container, sentAt, settledAt, { [SPAN_ATTR.containerId]: call.containerId ?? "" });
  }
  if (outcome !== "ok") {
    if (message.error instanceof Error) span.recordException(message.error, settledAt);
    span.setStatus({ code: SpanStatusCode.ERROR, message: outcome });
  }
  span.end(settledAt);
}
