import type { Capability } from "./constants.js";

/**
 * The limits a side enforces on the frames it receives, announced in its hello. A sender keeps its
 * frames within the peer's: maxFrameBytes (body bytes), maxDepth (nesting, top-level object = 1) and
 * maxValues (see checkJsonLimits).
 */
export interface Limits {
  maxFrameBytes: number;
  maxDepth: number;
  maxValues: number;
}

/** Name and version strings of the hello's app and sdk (each at most 256 chars). */
export interface NameAndVersion {
  name?: string;
  version?: string;
}

/** The host's first frame (the runtime's, or a tool's in listen mode). */
export interface HostHelloMessage {
  type: "hello";
  protocol: number;
  role: "host";
  limits: Limits;
  /** Capability names (at most 64 of at most 64 chars); unknown ones are ignored. */
  capabilities: string[];
  /** Ask the app for its console output during execute as log frames. Default false. */
  logRecords?: boolean;
}

/** The app's first frame (what `ociapp serve` sends on every connection). */
export interface AppHelloMessage {
  type: "hello";
  protocol: number;
  role: "app";
  /** Executes the app runs at once; further requests wait in arrival order. */
  maxConcurrency: number;
  limits: Limits;
  capabilities: string[];
  app?: NameAndVersion;
  sdk?: NameAndVersion;
}

/** W3C trace context (https://www.w3.org/TR/trace-context/) of a request. */
export interface TraceContext {
  /** "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>", lowercase. */
  traceparent: string;
  /** At most 512 chars. */
  tracestate?: string;
}

export interface RequestMessage {
  type: "request";
  /** 1 to 128 chars, unique among the ids in flight on the connection (requests and pings). */
  id: string;
  payload: unknown;
  /** As sent: a receiver reads it with parseTraceContext (a malformed one is dropped, not an error). */
  trace?: TraceContext;
}
/**
 * A prime request (sent only when the app listed "prime-request"): the app runs its request path as
 * for a request (framing, dispatch, a concurrency slot, its schemas on the sample its prime() hook
 * gave, the answer's encoding) but never execute, and answers with a response or error frame.
 */
export interface PrimeMessage {
  type: "prime";
  /** As a request's: unique among the ids in flight on the connection. */
  id: string;
}
export interface CancelMessage {
  type: "cancel";
  id: string;
}
export interface PingMessage {
  type: "ping";
  id: string;
  /**
   * Prime the app's request path first (its prime() hook, then the path run on a sample; once per
   * process). Sent only when the app listed "prime".
   */
  prime?: boolean;
}
export interface ResponseMessage {
  type: "response";
  id: string;
  payload: unknown;
}
export interface RemoteError {
  /** The error's name: "ValidationError", "Cancelled", "TypeError", ... */
  type: string;
  /** At most 8 KiB; control characters other than \n and \t escaped as \u00XX. */
  message: string;
  /** JSON the app attached to its error (an own `details` property), or zod's issues. */
  details?: unknown;
  /** Only when the app sets errorStacks: at most 16 KiB, escaped like message. */
  stack?: string;
}
export interface ErrorMessage {
  type: "error";
  id: string;
  error: RemoteError;
}
export interface PongMessage {
  type: "pong";
  id: string;
}
export type LogLevel = "debug" | "info" | "warn" | "error";
/** A console line the app wrote during a request's execute; only when the host asked (logRecords). */
export interface LogMessage {
  type: "log";
  level: LogLevel;
  /** The request whose execute wrote the line. */
  id?: string;
  /** At most 8 KiB; a longer line is cut, ending in "…". */
  text: string;
  /** Log frames dropped (the outbound buffer was full) since the last one that got out. */
  dropped?: number;
}

/** Frames the host sends and the app receives. */
export type HostMessage = HostHelloMessage | RequestMessage | PrimeMessage | CancelMessage | PingMessage;
/** Frames the app sends and the host receives. */
export type AppMessage = AppHelloMessage | ResponseMessage | ErrorMessage | PongMessage | LogMessage;

/** Protocol 1 names, kept as aliases: the client is the host, the server is the app. */
export type ClientMessage = HostMessage;
export type ServerMessage = AppMessage;
/** The hello a host reads (the app's). */
export type HelloMessage = AppHelloMessage;

export type { Capability };
