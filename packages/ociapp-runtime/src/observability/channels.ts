import { type Channel, channel } from "node:diagnostics_channel";

/**
 * The runtime's lifecycle on `node:diagnostics_channel`, as undici publishes its own: any code in the
 * process can subscribe (`diagnostics_channel.subscribe("ociapp:call:settled", fn)`), and a channel
 * with no subscriber costs one property read (`hasSubscribers`) per event. The OpenTelemetry
 * integration (observability/telemetry.ts) is one such subscriber.
 *
 * Messages are plain objects, created only when the channel has subscribers. Subscribers run
 * synchronously, inside the runtime's own call: they must be quick and must not throw (a throw is
 * reported by Node as an uncaught exception on the next tick, not to the runtime).
 */

/** What every artifact-scoped message says about the artifact. */
export interface ArtifactRef {
  /** "sha256:..." of the artifact's manifest: the runtime's identity for it. */
  digest: string;
  /** The path it was last resolved from. */
  path: string;
}

/** A call was created by execute(). A subscriber may set `trace` (W3C trace context) to send with it. */
export interface CallCreatedMessage {
  /** The call's id: unique in the process (every later event of the call names it). */
  id: string;
  /** The Runtime that made it (`stats().runtimeId`). */
  runtimeId: string;
  /** The artifact as named by the caller (a path, or an alias). */
  artifact: string;
  /** Set by a subscriber: the trace context the request frame carries to the app. */
  trace?: { traceparent: string; tracestate?: string };
}

export interface CallQueuedMessage {
  id: string;
  artifact: ArtifactRef;
  /** Calls waiting for this artifact, this one included. */
  queueLength: number;
}

export interface CallSentMessage {
  id: string;
  artifact: ArtifactRef;
  containerId: string;
}

export interface CallSettledMessage {
  id: string;
  /** Undefined when the call failed before its artifact was resolved. */
  artifact: ArtifactRef | undefined;
  /** "ok", or the error's `code` (OCIAPP_*), or "aborted" for a caller's signal. */
  outcome: string;
  error: unknown;
  /**
   * performance.now() at execute(), at send, and now. sentAt is undefined when the call was never
   * sent, or was sent before this channel had a subscriber (the clock is read only for one).
   */
  createdAt: number;
  sentAt: number | undefined;
  settledAt: number;
}

export interface ImageLoadMessage {
  artifact: ArtifactRef;
  /** Bytes of the artifact file sent to the engine so far, and in all. */
  sentBytes: number;
  totalBytes: number;
  /** "start", "progress" (at most every 250 ms), "done" or "failed". */
  phase: "start" | "progress" | "done" | "failed";
  error?: unknown;
}

export interface ContainerMessage {
  artifact: ArtifactRef;
  containerId: string;
  /** For "ready": ms from create to the app's hello. For "exited": the exit report. */
  startupMs?: number;
  exitCode?: number | null;
  oomKilled?: boolean;
}

/** One line a container wrote, or one log record its app sent, as delivered to the logs sink. */
export interface LogLineMessage {
  artifact: ArtifactRef;
  containerId: string;
  stream: "stdout" | "stderr" | "app";
  text: string;
  requestId?: string;
  level?: string;
}

/** The runtime's channels by purpose; each message shape is documented above. */
export const channels: {
  readonly callCreated: Channel;
  readonly callQueued: Channel;
  readonly callSent: Channel;
  readonly callSettled: Channel;
  readonly imageLoad: Channel;
  readonly containerStarted: Channel;
  readonly containerReady: Channel;
  readonly containerExited: Channel;
} = {
  callCreated: channel("ociapp:call:created"),
  callQueued: channel("ociapp:call:queued"),
  callSent: channel("ociapp:call:sent"),
  callSettled: channel("ociapp:call:settled"),
  imageLoad: channel("ociapp:image:load"),
  containerStarted: channel("ociapp:container:started"),
  containerReady: channel("ociapp:container:ready"),
  containerExited: channel("ociapp:container:exited"),
} as const;
