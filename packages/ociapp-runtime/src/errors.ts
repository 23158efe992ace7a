import type { ViolationReason } from "ociapp/protocol";
import type { KnownRemoteError, RemoteErrorCode } from "./remote/errors.js";

/** Every `code` an error of this package carries. */
export type RuntimeErrorCode =
  | "OCIAPP_INVALID_OPTION"
  | "OCIAPP_ARTIFACT"
  | "OCIAPP_ENGINE_UNAVAILABLE"
  | "OCIAPP_INSTANCE_STARTUP"
  | "OCIAPP_WORKER_EXITED"
  | "OCIAPP_PROTOCOL"
  | "OCIAPP_REMOTE_EXECUTION"
  | "OCIAPP_REQUEST_TIMEOUT"
  | "OCIAPP_QUEUE_FULL"
  | "OCIAPP_INVALID_REQUEST"
  | "OCIAPP_RUNTIME_CLOSED"
  | RemoteErrorCode;

/**
 * Every error class of this package as one union: `switch (error.code)` on it narrows to the class
 * (`case "OCIAPP_PROTOCOL": error.reason`).
 */
export type KnownRuntimeError =
  | OptionsError
  | ArtifactError
  | EngineUnavailableError
  | InstanceStartupError
  | WorkerExitedError
  | ProtocolError
  | RemoteExecutionError
  | RequestTimeoutError
  | QueueFullError
  | InvalidRequestError
  | RuntimeClosedError
  | KnownRemoteError;

/**
 * Every error the runtime raises extends {@link OciappRuntimeError} and carries a stable `code`
 * string: match on `code` (or `instanceof`), never on messages.
 */
export class OciappRuntimeError extends Error {
  readonly code: RuntimeErrorCode;

  constructor(code: RuntimeErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** An option passed to `new Runtime()` or a call is invalid. */
export class OptionsError extends OciappRuntimeError {
  declare readonly code: "OCIAPP_INVALID_OPTION";
  constructor(message: string, options?: { cause?: unknown }) {
    super("OCIAPP_INVALID_OPTION", message, options);
  }
}

/** The artifact file is missing, unreadable or malformed, or the engine refused to load it. */
export class ArtifactError extends OciappRuntimeError {
  declare readonly code: "OCIAPP_ARTIFACT";
  readonly path: string;

  constructor(path: string, message: string, options?: { cause?: unknown }) {
    super("OCIAPP_ARTIFACT", message, options);
    this.path = path;
  }
}

/** The container engine cannot be reached or does not support what the runtime needs. */
export class EngineUnavailableError extends OciappRuntimeError {
  declare readonly code: "OCIAPP_ENGINE_UNAVAILABLE";
  constructor(message: string, options?: { cause?: unknown }) {
    super("OCIAPP_ENGINE_UNAVAILABLE", message, options);
  }
}

/** Control characters a container could use to forge terminal output, except newline and tab. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/** The container's text, safe to print: control characters (but \n and \t) escaped as \u00XX. */
export function escapeControl(text: string): string {
  return text.replace(CONTROL, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

function withLogs(message: string, logs: string): string {
  return logs ? `${message}\n--- last container output ---\n${logs}` : message;
}

/** How a container ended, as the engine reported it (both fields are also on the errors below). */
export interface ExitReport {
  /** The container's exit code when the engine reported it within exitReportTimeout, else null. */
  exitCode: number | null;
  /** True when the kernel's OOM killer ended it (false also when the engine did not report). */
  oomKilled: boolean;
}

/**
 * A container did not become ready (its hello frame) within startupTimeout, exited first, closed its
 * connection or broke the protocol while starting.
 */
export class InstanceStartupError extends OciappRuntimeError {
  declare readonly code: "OCIAPP_INSTANCE_STARTUP";
  readonly digest: string;
  /** The last lines the container wrote to stdout/stderr (the last 40 of each stream, each at most 4 KiB; control characters escaped). */
  readonly logs: string;
  /** The exit code when the container exited and the engine reported it; else null. */
  readonly exitCode: number | null;
  /** True when the kernel's OOM killer ended it. */
  readonly oomKilled: boolean;

  constructor(
    digest: string,
    message: string,
    logs: string,
    exit: ExitReport = { exitCode: null, oomKilled: false },
    options?: { cause?: unknown },
  ) {
    const safe = escapeControl(logs);
    super("OCIAPP_INSTANCE_STARTUP", withLogs(message, safe), options);
    this.digest = digest;
    this.logs = safe;
    this.exitCode = exit.exitCode;
    this.oomKilled = exit.oomKilled;
  }
}

/** The container exited or broke its connection while the request was in flight. */
export class WorkerExitedError extends OciappRuntimeError {
  declare readonly code: "OCIAPP_WORKER_EXITED";
  /** The container's exit code when the engine reported it within exitReportTimeout, else null. */
  readonly exitCode: number | null;
  /** True when the kernel's OOM killer ended the container. */
  readonly oomKilled: boolean;
  /** The last lines the container wrote to stdout/stderr (the last 40 of each stream, each at most 4 KiB; control characters escaped). */
  readonly logs: string;

  constructor(message: string, exit: ExitReport, logs = "", options?: { cause?: unknown }) {
    const safe = escapeControl(logs);
    super("OCIAPP_WORKER_EXITED", withLogs(message, safe), options);
    this.exitCode = exit.exitCode;
    this.oomKilled = exit.oomKilled;
    this.logs = safe;
  }
}

/** Why a container was retired with ProtocolError: a wire-protocol violation (ociapp/protocol's ViolationReason). */
export type ProtocolErrorReason = ViolationReason;

/** The container broke the wire protocol (oversize or malformed frame, stall, unknown id); it was retired. */
export class ProtocolError extends OciappRuntimeError {
  declare readonly code: "OCIAPP_PROTOCOL";
  /** The violation, e.g. "frame-too-large", "invalid-json", "unknown-id", "frame-timeout". */
  readonly reason: ProtocolErrorReason;

  constructor(reason: ProtocolErrorReason, message: string, options?: { cause?: unknown }) {
    super("OCIAPP_PROTOCOL", message, options);
    this.reason = reason;
  }
}

/** The app answered with an error frame: its execute threw, or validation failed, or it was cancelled. */
export class RemoteExecutionError extends OciappRuntimeError {
  declare readonly code: "OCIAPP_REMOTE_EXECUTION";
  /**
   * The app's error: its type (the error's name), message (at most 8 KiB), JSON `details` when it
   * attached some, and `stack` when the app opts in (`errorStacks`; at most 16 KiB). All of it is the
   * container's text: bounded and with control characters escaped again here, whatever the app sent.
   */
  readonly remote: { type: string; message: string; details?: unknown; stack?: string };

  constructor(remote: { type: string; message: string; details?: unknown; stack?: string }) {
    const type = escapeControl(remote.type.slice(0, MAX_REMOTE_TYPE_CHARS));
    const message = escapeControl(remote.message.slice(0, MAX_REMOTE_MESSAGE_CHARS));
    super("OCIAPP_REMOTE_EXECUTION", `${type}: ${message}`);
    this.remote = { type, message };
    if (remote.details !== undefined) this.remote.details = remote.details;
    if (typeof remote.stack === "string") {
      this.remote.stack = escapeControl(remote.stack.slice(0, MAX_REMOTE_STACK_CHARS));
    }
  }
}

/** Bounds on what a RemoteExecutionError keeps of the app's error (protocol v2's own bounds). */
const MAX_REMOTE_TYPE_CHARS = 256;
const MAX_REMOTE_MESSAGE_CHARS = 8 * 1024;
const MAX_REMOTE_STACK_CHARS = 16 * 1024;

/** requestTimeout or the call's own timeout passed (queue time included). */
export class RequestTimeoutError extends OciappRuntimeError {
  declare readonly code: "OCIAPP_REQUEST_TIMEOUT";
  readonly timeoutMs: number;

  constructor(timeoutMs: number) {
    super("OCIAPP_REQUEST_TIMEOUT", `the request did not complete within ${timeoutMs} ms`);
    this.timeoutMs = timeoutMs;
  }
}

/** The artifact's queue already holds maxQueue waiting requests. */
export class QueueFullError extends OciappRuntimeError {
  declare readonly code: "OCIAPP_QUEUE_FULL";
  readonly maxQueue: number;

  /** `message` for a RemoteExecutor, whose bound is calls outstanding per agent (maxQueue holds it). */
  constructor(maxQueue: number, message = `the queue for this artifact is full (maxQueue ${maxQueue})`) {
    super("OCIAPP_QUEUE_FULL", message);
    this.maxQueue = maxQueue;
  }
}

/** The request payload cannot be sent: undefined, not JSON-serialisable, or larger than maxFrameBytes. */
export class InvalidRequestError extends OciappRuntimeError {
  declare readonly code: "OCIAPP_INVALID_REQUEST";
  constructor(message: string, options?: { cause?: unknown }) {
    super("OCIAPP_INVALID_REQUEST", message, options);
  }
}

/** The runtime was closed (or is closing) before the call could be served. */
export class RuntimeClosedError extends OciappRuntimeError {
  declare readonly code: "OCIAPP_RUNTIME_CLOSED";
  constructor(message = "the runtime is closed") {
    super("OCIAPP_RUNTIME_CLOSED", message);
  }
}
