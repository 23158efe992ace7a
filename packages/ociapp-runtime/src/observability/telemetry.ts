import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { createRequire } from "node:module";
import { context, type MeterProvider, metrics, type TracerProvider, trace } from "@opentelemetry/api";
import { OptionsError } from "../errors.js";
import { show } from "../options/validate.js";
import type {
  ArtifactRef,
  CallCreatedMessage,
  CallQueuedMessage,
  CallSentMessage,
  CallSettledMessage,
  ContainerMessage,
  ImageLoadMessage,
} from "./channels.js";
import { ATTR, type Instruments, instrumentsFor, type TelemetrySource } from "./telemetry-metrics.js";
import {
  abandonCall,
  CallTrace,
  type ContainerTrace,
  finishCall,
  type LoadTrace,
  type Registration,
  traceContext,
} from "./telemetry-spans.js";

export { ATTR, METRICS, type TelemetrySource } from "./telemetry-metrics.js";
export { SPAN_ATTR, SPANS } from "./telemetry-spans.js";

/**
 * The Runtime option `telemetry`: OpenTelemetry traces and metrics (see the README's "Tracing and
 * metrics"). `true` reports to the global providers (`trace.getTracerProvider()`,
 * `metrics.getMeterProvider()`: no-ops until the service installs an OpenTelemetry SDK); an object
 * names the providers (each one left out is the global one); `false` (the default) reports nothing
 * and subscribes to nothing. The global tracer provider is a proxy, so an SDK installed later still
 * gets the spans; the global meter provider is read when the Runtime is constructed, so install the
 * SDK before that.
 */
export interface TelemetryOptions {
  tracerProvider?: TracerProvider;
  meterProvider?: MeterProvider;
}

/** The instrumentation scope: the tracer's and the meter's name (and the package's version). */
export const SCOPE = "ociapp-runtime";

/** Validates the option: the providers to report to, or undefined when telemetry is off (the default). */
export function resolveTelemetry(value: unknown): TelemetryOptions | undefined {
  if (value === undefined || value === false) return undefined;
  if (value === true) return {};
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    const { tracerProvider, meterProvider, ...rest } = value as Record<string, unknown>;
    const unknown = Object.keys(rest)[0];
    if (unknown !== undefined) {
      throw new OptionsError(
        `Runtime option telemetry.${unknown} is not a known option (known: tracerProvider, meterProvider)`,
      );
    }
    if (tracerProvider !== undefined && typeof (tracerProvider as TracerProvider).getTracer !== "function") {
      throw new OptionsError(
        `Runtime option telemetry.tracerProvider must be an OpenTelemetry TracerProvider (got ${show(tracerProvider)})`,
      );
    }
    if (meterProvider !== undefined && typeof (meterProvider as MeterProvider).getMeter !== "function") {
      throw new OptionsError(
        `Runtime option telemetry.meterProvider must be an OpenTelemetry MeterProvider (got ${show(meterProvider)})`,
      );
    }
    return value as TelemetryOptions;
  }
  throw new OptionsError(
    `Runtime option telemetry must be a boolean or { tracerProvider?, meterProvider? } (got ${show(value)})`,
  );
}

/** What a Runtime holds while it reports: detach() once it has closed. */
export interface TelemetryHandle {
  detach(): void;
}

let version: string | undefined;
function packageVersion(): string {
  version ??= (createRequire(import.meta.url)("../../package.json") as { version: string }).version;
  return version;
}

/** Runtimes reporting, by id; the subscribers are attached while there is at least one. */
const registrations = new Map<string, Registration>();
const calls = new Map<string, CallTrace>();
const containers = new Map<string, ContainerTrace>();
const loads = new Map<string, LoadTrace>();
/** Which Runtime a pool's artifact ref belongs to (learned from its calls), for container and image metrics. */
const owners = new WeakMap<ArtifactRef, Registration>();

/**
 * Starts reporting a Runtime: its calls get spans from the tracer provider, and its metrics go to
 * the meter provider. The channel subscribers are shared by every Runtime of the process, attached
 * with the first and detached with the last.
 */
export function attachTelemetry(source: TelemetrySource, options: TelemetryOptions): TelemetryHandle {
  const tracer = (options.tracerProvider ?? trace.getTracerProvider()).getTracer(SCOPE, packageVersion());
  const meter = (options.meterProvider ?? metrics.getMeterProvider()).getMeter(SCOPE, packageVersion());
  const registration: Registration = { source, tracer, instruments: instrumentsFor(meter, finishSettled) };
  if (registrations.size === 0) subscribeAll();
  registrations.set(source.id, registration);
  registration.instruments.add(source);
  let attached = true;
  return {
    detach() {
      if (!attached) return;
      attached = false;
      // Its settled calls are recorded now: once close() resolved, every span has ended.
      finishSettled();
      registration.instruments.remove(source);
      registrations.delete(source.id);
      // Calls it never settled (there should be none once close() resolved) end with the runtime.
      for (const [id, call] of calls) {
        if (call.registration !== registration) continue;
        calls.delete(id);
        abandonCall(call);
      }
      if (registrations.size === 0) unsubscribeAll();
    },
  };
}

/**
 * Records every settled call's span and metrics now instead of at the next batch (for tests: the
 * spans of the calls that have settled are then exported; a metric collection does this itself).
 */
export function recordSettled(): void {
  finishSettled();
}

/** Whether the process has the telemetry subscribers attached (for tests: none leak). */
export function telemetrySubscribed(): boolean {
  return registrations.size > 0;
}

type Handler = (message: unknown) => void;

const HANDLERS: [string, Handler][] = (
  [
    ["ociapp:call:created", (message) => onCreated(message as CallCreatedMessage)],
    ["ociapp:call:queued", (message) => onQueued(message as CallQueuedMessage)],
    ["ociapp:call:sent", (message) => onSent(message as CallSentMessage)],
    ["ociapp:call:settled", (message) => onSettled(message as CallSettledMessage)],
    ["ociapp:image:load", (message) => onImageLoad(message as ImageLoadMessage)],
    ["ociapp:container:started", (message) => onContainerStarted(message as ContainerMessage)],
    ["ociapp:container:ready", (message) => onContainerReady(message as ContainerMessage)],
    ["ociapp:container:exited", (message) => onContainerExited(message as ContainerMessage)],
  ] satisfies [string, Handler][]
).map(([name, handler]) => [name, guarded(handler)]);

/**
 * A subscriber runs inside the runtime's own code, and a throw there would surface as an uncaught
 * exception: a faulty tracer or meter (the service's) must cost its telemetry, never a call.
 */
function guarded(handler: Handler): Handler {
  return (message) => {
    try {
      handler(message);
    } catch {
      // dropped: telemetry is best effort
    }
  };
}

function subscribeAll(): void {
  for (const [name, handler] of HANDLERS) subscribe(name, handler);
}

function unsubscribeAll(): void {
  for (const [name, handler] of HANDLERS) unsubscribe(name, handler);
  for (const call of calls.values()) abandonCall(call);
  calls.clear();
  containers.clear();
  loads.clear();
}

function onCreated(message: CallCreatedMessage): void {
  const registration = registrations.get(message.runtimeId);
  if (registration === undefined) return;
  // Published inside execute(): the active context is the caller's. Its span context goes to the app
  // as is (a map read and a string, no SDK work on the call's path); the execute span is started
  // once the call settled, as this context's child (finishCall). With no active span the app gets no
  // trace: there is no caller's trace to join. A trace that another subscriber of the channel set
  // first is left as it is.
  const parent = context.active();
  if (message.trace === undefined) {
    const caller = trace.getSpanContext(parent);
    if (caller !== undefined) message.trace = traceContext(caller);
  }
  calls.set(message.id, new CallTrace(message.id, message.artifact, registration, parent, performance.now()));
}

function onQueued(message: CallQueuedMessage): void {
  const call = calls.get(message.id);
  if (call === undefined) return;
  learnOwner(message.artifact, call.registration);
  call.digest = message.artifact.digest;
  // A call refused by a draining container is queued again: its wait began the first time.
  if (call.queuedAt < 0) {
    call.queuedAt = performance.now();
    call.queueLength = message.queueLength;
  }
}

function onSent(message: CallSentMessage): void {
  const call = calls.get(message.id);
  if (call === undefined) return;
  learnOwner(message.artifact, call.registration);
  call.digest = message.artifact.digest;
  call.containerId = message.containerId;
  const container = containers.get(message.containerId);
  // A cold start for this call: the container became ready while the call waited for it.
  call.container = container !== undefined && container.readyAt >= call.createdAt ? container : undefined;
}

/**
 * How long a settled call waits for its span and metrics to be recorded, with the others settled
 * meanwhile (ms). Recorded one call at a time (a setImmediate per call), the SDK's work ran between
 * every two round trips with its code and data cold: 7 us per call measured inside the runtime on a
 * 2-core host, against 3 us in a tight loop; in batches it runs warm (5.7 us with 5 ms batches, and
 * one timer per batch instead of one setImmediate per call, which cost 1 to 2 us on the call's
 * path). The price: a batch runs at once, so the calls whose answers arrive meanwhile wait for it
 * (one call per batch for a sequential caller: a tail-latency cost). A span's times come from the
 * messages, so they do not move.
 */
const FINISH_DELAY_MS = 10;

/** Settled calls whose span and metrics are recorded at the next batch (finishSettled). */
let settled: CallTrace[] = [];
let finishTimer: NodeJS.Timeout | undefined;

/**
 * The callSettled subscriber runs inside the call's settling, before its caller hears the answer: it
 * only queues the call. The timer is unref'd (a pending batch never keeps the process alive);
 * detach() and each metric collection record what is pending first, so counts and spans are whole
 * once close() resolved or when a reader collects.
 */
function onSettled(message: CallSettledMessage): void {
  const call = calls.get(message.id);
  if (call === undefined) return;
  calls.delete(message.id);
  call.settled = message;
  settled.push(call);
  if (finishTimer === undefined) finishTimer = setTimeout(finishSettled, FINISH_DELAY_MS).unref();
}

function finishSettled(): void {
  if (finishTimer !== undefined) {
    clearTimeout(finishTimer);
    finishTimer = undefined;
  }
  if (settled.length === 0) return;
  const batch = settled;
  settled = [];
  for (const call of batch) {
    try {
      finishCall(call, call.settled as CallSettledMessage);
    } catch {
      // a faulty tracer or meter costs its own records only
    }
  }
}

function onImageLoad(message: ImageLoadMessage): void {
  const { digest } = message.artifact;
  if (message.phase === "start") {
    loads.set(digest, {
      ref: message.artifact,
      startedAt: performance.now(),
      endedAt: -1,
      sentBytes: 0,
      totalBytes: 0,
      failed: false,
    });
    return;
  }
  const load = loads.get(digest);
  if (load === undefined) return;
  if (message.phase === "progress") {
    load.sentBytes = message.sentBytes;
    load.totalBytes = message.totalBytes;
    return;
  }
  loads.delete(digest);
  load.endedAt = performance.now();
  load.failed = message.phase === "failed";
  // Every call of this artifact not yet sent waited for this load.
  for (const call of calls.values()) {
    if (call.digest === digest && call.containerId === undefined) call.load = load;
  }
  const instruments = instrumentsOf(message.artifact);
  if (instruments === undefined) return;
  const attributes = { [ATTR.digest]: digest, [ATTR.path]: message.artifact.path };
  instruments.imageLoads.add(1, { ...attributes, [ATTR.loadOutcome]: load.failed ? "failed" : "ok" });
  if (load.sentBytes > 0) instruments.imageLoadBytes.add(load.sentBytes, attributes);
}

function onContainerStarted(message: ContainerMessage): void {
  containers.set(message.containerId, { beganAt: -1, readyAt: -1, startupMs: 0 });
  instrumentsOf(message.artifact)?.coldStarts.add(1, {
    [ATTR.digest]: message.artifact.digest,
    [ATTR.path]: message.artifact.path,
  });
}

function onContainerReady(message: ContainerMessage): void {
  const now = performance.now();
  const startupMs = message.startupMs ?? 0;
  const container = containers.get(message.containerId);
  if (container === undefined) return;
  container.readyAt = now;
  container.beganAt = now - startupMs;
  container.startupMs = startupMs;
  instrumentsOf(message.artifact)?.startupDuration.record(startupMs, {
    [ATTR.digest]: message.artifact.digest,
    [ATTR.path]: message.artifact.path,
  });
}

function onContainerExited(message: ContainerMessage): void {
  containers.delete(message.containerId);
}

/** A pool's ref keeps its object while its path does: one WeakMap write per pool, not per call. */
function learnOwner(ref: ArtifactRef, registration: Registration): void {
  if (owners.get(ref) !== registration) owners.set(ref, registration);
}

/**
 * The instruments for a container or image event, which names its artifact but not its Runtime: the
 * Runtime whose calls used that pool's ref, else the one meter every Runtime shares (a warm() before
 * any call, in the usual process with one meter provider), else none.
 */
function instrumentsOf(ref: ArtifactRef): Instruments | undefined {
  const owner = owners.get(ref);
  if (owner !== undefined) return owner.instruments;
  let only: Instruments | undefined;
  for (const registration of registrations.values()) {
    if (only !== undefined && registration.instruments !== only) return undefined;
    only = registration.instruments;
  }
  return only;
}
