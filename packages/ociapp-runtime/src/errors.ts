import type { ViolationReason } from "ociapp/protocol";

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
  | "OCIAPP_RUNTIME_CLOSED";

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
  | RuntimeClosedError;

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
  constructor(message: string) {
    super("OCIAPP_INVALID_OPTION", message);
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

/** A container did not become ready (hello frame on its socket) within startupTimeout, or died first. */
export class InstanceStartupError extends OciappRuntimeError {
  declare readonly code: "OCIAPP_INSTANCE_STARTUP";
  readonly digest: string;
  /** The last lines the container wrote to stdout/stderr while starting (bounded). */
  readonly logs: string;

  constructor(digest: string, message: string, logs: string, options?: { cause?: unknown }) {
    super(
      "OCIAPP_INSTANCE_STARTUP",
      logs ? `${message}\n--- last container output ---\n${logs}` : message,
      options,
    );
    this.digest = digest;
    this.logs = logs;
  }
}

/** The container exited or broke its connection while the request was in flight. */
export class WorkerExitedError extends OciappRuntimeError {
  declare readonly code: "OCIAPP_WORKER_EXITED";
  /** The container's exit code when the engine reported it, else null. */
  readonly exitCode: number | null;
  /** True when the kernel's OOM killer ended the container. */
  readonly oomKilled: boolean;

  constructor(
    message: string,
    exit: { exitCode: number | null; oomKilled: boolean },
    options?: { cause?: unknown },
  ) {
    super("OCIAPP_WORKER_EXITED", message, options);
    this.exitCode = exit.exitCode;
    this.oomKilled = exit.oomKilled;
  }
}

/**
 * Why a container was retired with ProtocolError: a wire-protocol violation (ociapp/protocol's
 * ViolationReason), or "cancel-timeout" (a cancelled request not answered within
 * max(shutdownTimeout, 1 s)).
 */
export type ProtocolErrorReason = ViolationReason | "cancel-timeout";

/**
 * The container broke the wire protocol (oversize or malformed frame, stall, unknown id), or did not
 * answer a cancel in time; it was retired.
 */
export class ProtocolError extends OciappRuntimeError {
  declare readonly code: "OCIAPP_PROTOCOL";
  /** The violation, e.g. "frame-too-large", "invalid-json", "unknown-id", "frame-timeout", "cancel-timeout". */
  readonly reason: ProtocolErrorReason;

  constructor(reason: ProtocolErrorReason, message: string, options?: { cause?: unknown }) {
    super("OCIAPP_PROTOCOL", message, options);
    this.reason = reason;
  }
}

/** The app answered with an error frame: its execute threw, or validation failed, or it was cancelled. */
export class RemoteExecutionError extends OciappRuntimeError {
  declare readonly code: "OCIAPP_REMOTE_EXECUTION";
  readonly remote: { type: string; message: string; details?: unknown };

  constructor(remote: { type: string; message: string; details?: unknown }) {
    super("OCIAPP_REMOTE_EXECUTION", `${remote.type}: ${remote.message}`);
    this.remote =
      remote.details === undefined
        ? { type: remote.type, message: remote.message }
        : { type: remote.type, message: remote.message, details: remote.details };
  }
}

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

  constructor(maxQueue: number) {
    super("OCIAPP_QUEUE_FULL", `the queue for this artifact is full (maxQueue ${maxQueue})`);
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
