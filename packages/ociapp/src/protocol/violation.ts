import { OciappError } from "../errors.js";

export type ViolationReason =
  | "empty-frame"
  | "frame-too-large"
  | "too-deep"
  | "too-many-values"
  | "invalid-utf8"
  | "invalid-json"
  | "invalid-message"
  | "duplicate-id"
  | "unknown-id"
  | "frame-timeout"
  | "unexpected-hello"
  | "missing-hello";

/** The peer broke the wire protocol. The connection it arrived on must be closed. */
export class ProtocolViolationError extends OciappError {
  declare readonly code: "OCIAPP_PROTOCOL_VIOLATION";
  readonly reason: ViolationReason;

  constructor(reason: ViolationReason, message: string, options?: { cause?: unknown }) {
    super("OCIAPP_PROTOCOL_VIOLATION", message, options);
    this.reason = reason;
  }
}
