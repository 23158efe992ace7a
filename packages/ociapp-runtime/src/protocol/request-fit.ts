import { checkJsonLimits, FRAME_HEADER_BYTES, type Limits, mayBreakJsonLimits } from "ociapp/protocol";
import { InvalidRequestError } from "../errors.js";

/**
 * Whether a request frame (framed once, for the runtime's own limits) fits what a container announced
 * in its hello: its maxFrameBytes, and (checked on the bytes, only for frames long enough to break
 * them) its maxDepth and maxValues. Returns the error its call fails with, or undefined.
 */
export function requestMisfit(
  frame: Buffer,
  maxFrameBytes: number,
  limits: Limits,
): InvalidRequestError | undefined {
  const bodyBytes = frame.length - FRAME_HEADER_BYTES;
  if (bodyBytes > maxFrameBytes) {
    return new InvalidRequestError(
      `the request is larger than the container accepts (its hello allows ${maxFrameBytes} bytes)`,
    );
  }
  if (!mayBreakJsonLimits(bodyBytes, limits)) return undefined;
  try {
    checkJsonLimits(frame.subarray(FRAME_HEADER_BYTES), limits);
    return undefined;
  } catch (error) {
    return new InvalidRequestError(`the request breaks the container's limits: ${(error as Error).message}`, {
      cause: error,
    });
  }
}
