import { OciappRuntimeError } from "../errors.js";

/** The `code` of each error only remote execution raises. */
export type RemoteErrorCode =
  | "OCIAPP_UNAUTHORIZED"
  | "OCIAPP_FORBIDDEN"
  | "OCIAPP_UNKNOWN_ARTIFACT"
  | "OCIAPP_DIGEST_MISMATCH"
  | "OCIAPP_PAYLOAD_TOO_LARGE"
  | "OCIAPP_QUOTA_EXCEEDED"
  | "OCIAPP_AGENT_UNAVAILABLE"
  | "OCIAPP_CALL_LOST"
  | "OCIAPP_AGENT";

/** Every error class of remote execution, as one union (see KnownRuntimeError). */
export type KnownRemoteError =
  | UnauthorizedError
  | ForbiddenError
  | UnknownArtifactError
  | DigestMismatchError
  | PayloadTooLargeError
  | QuotaExceededError
  | AgentUnavailableError
  | CallLostError
  | AgentError;

/** HTTP 401: no bearer token, or one the agent does not know (or a client certificate it refused). */
export class UnauthorizedError extends OciappRuntimeError {
  declare readonly code: "OCIAPP_UNAUTHORIZED";
  constructor(message = "the agent refused the credentials (no bearer token, or an unknown one)") {
    super("OCIAPP_UNAUTHORIZED", message);
  }
}

/** HTTP 403: the token is known but its scopes do not cover this digest, registry, action or setting. */
export class ForbiddenError extends OciappRuntimeError {
  declare readonly code: "OCIAPP_FORBIDDEN";
  constructor(message: string) {
    super("OCIAPP_FORBIDDEN", message);
  }
}

/** HTTP 404: the agent holds no artifact with this digest and none of the token's registries has it. */
export class UnknownArtifactError extends OciappRuntimeError {
  declare readonly code: "OCIAPP_UNKNOWN_ARTIFACT";
  readonly digest: string;
  constructor(digest: string, message = `the agent holds no artifact ${digest}`) {
    super("OCIAPP_UNKNOWN_ARTIFACT", message);
    this.digest = digest;
  }
}

/** HTTP 409: an uploaded or pulled artifact's content does not have the digest it was named by. */
export class DigestMismatchError extends OciappRuntimeError {
  declare readonly code: "OCIAPP_DIGEST_MISMATCH";
  readonly digest: string;
  constructor(digest: string, message: string) {
    super("OCIAPP_DIGEST_MISMATCH", message);
    this.digest = digest;
  }
}

/** HTTP 413: a request body (payload or upload) is larger than the agent accepts. */
export class PayloadTooLargeError extends OciappRuntimeError {
  declare readonly code: "OCIAPP_PAYLOAD_TOO_LARGE";
  /** The agent's limit, in bytes. */
  readonly limit: number;
  constructor(limit: number, message = `the request body is larger than the agent accepts (${limit} bytes)`) {
    super("OCIAPP_PAYLOAD_TOO_LARGE", message);
    this.limit = limit;
  }
}

/** HTTP 429: the token's quota (calls in flight, or calls per second) is used up; nothing ran. */
export class QuotaExceededError extends OciappRuntimeError {
  declare readonly code: "OCIAPP_QUOTA_EXCEEDED";
  constructor(message: string) {
    super("OCIAPP_QUOTA_EXCEEDED", message);
  }
}

/**
 * No agent could take the call, and it never ran: every agent tried was unreachable, refused the TLS
 * handshake, refused the stream (HTTP/2 GOAWAY, RFC 9113 §6.8) or answered 503 while draining.
 */
export class AgentUnavailableError extends OciappRuntimeError {
  declare readonly code: "OCIAPP_AGENT_UNAVAILABLE";
  constructor(message: string, options?: { cause?: unknown }) {
    super("OCIAPP_AGENT_UNAVAILABLE", message, options);
  }
}

/**
 * The connection to the agent ended (or went silent past the keepalive) after the request was sent:
 * the call may or may not have run, so it is not sent again anywhere.
 */
export class CallLostError extends OciappRuntimeError {
  declare readonly code: "OCIAPP_CALL_LOST";
  /** The agent's address. */
  readonly agent: string;
  constructor(agent: string, message: string, options?: { cause?: unknown }) {
    super("OCIAPP_CALL_LOST", message, options);
    this.agent = agent;
  }
}

/** HTTP 500, or an answer the client cannot read: a fault in the agent, not in the call. */
export class AgentError extends OciappRuntimeError {
  declare readonly code: "OCIAPP_AGENT";
  constructor(message: string, options?: { cause?: unknown }) {
    super("OCIAPP_AGENT", message, options);
  }
}
