import {
  ArtifactError,
  EngineUnavailableError,
  InstanceStartupError,
  InvalidRequestError,
  OciappRuntimeError,
  OptionsError,
  ProtocolError,
  type ProtocolErrorReason,
  QueueFullError,
  RemoteExecutionError,
  RequestTimeoutError,
  RuntimeClosedError,
  type RuntimeErrorCode,
  WorkerExitedError,
} from "../../errors.js";
import {
  AgentError,
  AgentUnavailableError,
  CallLostError,
  DigestMismatchError,
  ForbiddenError,
  PayloadTooLargeError,
  QuotaExceededError,
  UnauthorizedError,
  UnknownArtifactError,
} from "../errors.js";

// The agent's HTTP surface, shared by the agent and the client (openapi.yaml describes it). Every
// answer that is not a success is `{"error": {"code", "message", ...fields}}` with the status below;
// the client rebuilds the same error class from it, so code written against Executor sees the same
// errors locally and remotely.

export const ROUTES = {
  healthz: "/healthz",
  metrics: "/metrics",
  status: "/v1/status",
} as const;

/** `/v1/artifacts/<digest>` and its actions. */
export function artifactPath(digest: string, action?: "execute" | "warm" | "drain" | "pull"): string {
  return action === undefined ? `/v1/artifacts/${digest}` : `/v1/artifacts/${digest}/${action}`;
}

/** Matches an artifact route: the digest and the action (undefined for the artifact itself). */
export const ARTIFACT_ROUTE = /^\/v1\/artifacts\/(sha256:[a-f0-9]{64})(?:\/(execute|warm|drain|pull))?$/;

export const HEADERS = {
  /** Per-call settings as one JSON object (`{"timeout": 5000}`), checked against the token's scopes and the policy. */
  settings: "ociapp-settings",
} as const;

/** The HTTP status each error code is answered with. */
const STATUS: Record<RuntimeErrorCode, number> = {
  OCIAPP_INVALID_OPTION: 400,
  OCIAPP_INVALID_REQUEST: 400,
  OCIAPP_UNAUTHORIZED: 401,
  OCIAPP_FORBIDDEN: 403,
  OCIAPP_UNKNOWN_ARTIFACT: 404,
  OCIAPP_DIGEST_MISMATCH: 409,
  OCIAPP_PAYLOAD_TOO_LARGE: 413,
  OCIAPP_REMOTE_EXECUTION: 422,
  OCIAPP_ARTIFACT: 422,
  OCIAPP_QUOTA_EXCEEDED: 429,
  OCIAPP_QUEUE_FULL: 429,
  OCIAPP_AGENT: 500,
  OCIAPP_CALL_LOST: 500,
  OCIAPP_WORKER_EXITED: 502,
  OCIAPP_INSTANCE_STARTUP: 502,
  OCIAPP_PROTOCOL: 502,
  OCIAPP_ENGINE_UNAVAILABLE: 503,
  OCIAPP_RUNTIME_CLOSED: 503,
  OCIAPP_AGENT_UNAVAILABLE: 503,
  OCIAPP_REQUEST_TIMEOUT: 504,
};

export function statusOf(error: OciappRuntimeError): number {
  return STATUS[error.code] ?? 500;
}

export interface ErrorBody {
  error: { code: string; message: string } & Record<string, unknown>;
}

const LOGS_MARK = "\n--- last container output ---\n";

function withoutLogs(message: string): string {
  const at = message.indexOf(LOGS_MARK);
  return at === -1 ? message : message.slice(0, at);
}

/** The JSON body of an error answer: the code, the message and the class's own fields. */
export function errorBody(error: OciappRuntimeError): ErrorBody {
  const base = { code: error.code as string, message: error.message };
  if (error instanceof RemoteExecutionError) return { error: { ...base, remote: error.remote } };
  if (error instanceof RequestTimeoutError) return { error: { ...base, timeoutMs: error.timeoutMs } };
  if (error instanceof QueueFullError) return { error: { ...base, maxQueue: error.maxQueue } };
  if (error instanceof ProtocolError) return { error: { ...base, reason: error.reason } };
  if (error instanceof WorkerExitedError || error instanceof InstanceStartupError) {
    const exit = { exitCode: error.exitCode, oomKilled: error.oomKilled, logs: error.logs };
    const digest = error instanceof InstanceStartupError ? { digest: error.digest } : {};
    return { error: { ...base, message: withoutLogs(error.message), ...exit, ...digest } };
  }
  if (error instanceof UnknownArtifactError || error instanceof DigestMismatchError) {
    return { error: { ...base, digest: error.digest } };
  }
  if (error instanceof PayloadTooLargeError) return { error: { ...base, limit: error.limit } };
  return { error: base };
}

function text(value: unknown, fallback: string): string {
  return typeof value === "string" ? value.slice(0, 64 * 1024) : fallback;
}

function count(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) ? value : 0;
}

function exitCode(value: unknown): number | null {
  return typeof value === "number" && Number.isInteger(value) ? value : null;
}

/**
 * Rebuilds the error an agent answered with: the same class and `code` as on the agent. A body that
 * is not an error body, or a code this client does not know, gives AgentError.
 */
export function errorFromBody(
  status: number,
  body: unknown,
  agent: string,
  digest: string,
): OciappRuntimeError {
  const error = (body as { error?: Record<string, unknown> } | undefined)?.error;
  if (typeof error !== "object" || error === null || typeof error.code !== "string") {
    return new AgentError(`agent ${agent} answered HTTP ${status} without an error body`);
  }
  const message = text(error.message, `HTTP ${status}`);
  const fromDigest = text(error.digest, digest);
  switch (error.code as RuntimeErrorCode) {
    case "OCIAPP_INVALID_OPTION":
      return new OptionsError(message);
    case "OCIAPP_INVALID_REQUEST":
      return new InvalidRequestError(message);
    case "OCIAPP_UNAUTHORIZED":
      return new UnauthorizedError(message);
    case "OCIAPP_FORBIDDEN":
      return new ForbiddenError(message);
    case "OCIAPP_UNKNOWN_ARTIFACT":
      return new UnknownArtifactError(fromDigest, message);
    case "OCIAPP_DIGEST_MISMATCH":
      return new DigestMismatchError(fromDigest, message);
    case "OCIAPP_PAYLOAD_TOO_LARGE":
      return new PayloadTooLargeError(count(error.limit), message);
    case "OCIAPP_REMOTE_EXECUTION": {
      const remote = (error.remote ?? {}) as Record<string, unknown>;
      const details = remote.details === undefined ? {} : { details: remote.details };
      return new RemoteExecutionError({
        type: text(remote.type, "Error"),
        message: text(remote.message, ""),
        ...details,
      });
    }
    case "OCIAPP_ARTIFACT":
      return new ArtifactError(digest, message);
    case "OCIAPP_QUOTA_EXCEEDED":
      return new QuotaExceededError(message);
    case "OCIAPP_QUEUE_FULL":
      return new QueueFullError(count(error.maxQueue));
    case "OCIAPP_WORKER_EXITED":
      return new WorkerExitedError(
        message,
        { exitCode: exitCode(error.exitCode), oomKilled: error.oomKilled === true },
        text(error.logs, ""),
      );
    case "OCIAPP_INSTANCE_STARTUP":
      return new InstanceStartupError(fromDigest, message, text(error.logs, ""), {
        exitCode: exitCode(error.exitCode),
        oomKilled: error.oomKilled === true,
      });
    case "OCIAPP_PROTOCOL":
      return new ProtocolError(text(error.reason, "invalid-frame") as ProtocolErrorReason, message);
    case "OCIAPP_ENGINE_UNAVAILABLE":
      return new EngineUnavailableError(message);
    case "OCIAPP_RUNTIME_CLOSED":
      return new RuntimeClosedError(message);
    case "OCIAPP_AGENT_UNAVAILABLE":
      return new AgentUnavailableError(message);
    case "OCIAPP_REQUEST_TIMEOUT":
      return new RequestTimeoutError(count(error.timeoutMs));
    case "OCIAPP_CALL_LOST":
      return new CallLostError(agent, message);
    case "OCIAPP_AGENT":
      return new AgentError(message);
    default:
      return new AgentError(
        `agent ${agent} answered HTTP ${status} with unknown code ${text(error.code, "")}`,
      );
  }
}

/** An error as the agent answers it: library errors keep their class; anything else is AgentError. */
export function asRuntimeError(error: unknown): OciappRuntimeError {
  if (error instanceof OciappRuntimeError) return error;
  return new AgentError("the agent failed to handle the request", { cause: error });
}
