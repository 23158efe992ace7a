import { encodeFrame } from "ociapp/protocol";
import { InvalidRequestError } from "../errors.js";
import type { CallCreatedMessage } from "../observability/channels.js";

/**
 * One call's request frame, encoded once at execute() for the runtime's maxFrameBytes, with the W3C
 * trace context a subscriber gave it. Throws InvalidRequestError (too large, not JSON-serialisable).
 */
export function encodeRequest(
  id: string,
  payload: unknown,
  maxFrameBytes: number,
  trace: CallCreatedMessage["trace"],
): Buffer {
  try {
    return encodeFrame(
      trace && typeof trace.traceparent === "string"
        ? { type: "request", id, payload, trace }
        : { type: "request", id, payload },
      maxFrameBytes,
    );
  } catch (error) {
    const reason = (error as { reason?: string }).reason;
    if (reason === "frame-too-large") {
      throw new InvalidRequestError(`the request is larger than maxFrameBytes (${maxFrameBytes} bytes)`, {
        cause: error,
      });
    }
    throw new InvalidRequestError(
      `the request payload is not JSON-serialisable: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
}
