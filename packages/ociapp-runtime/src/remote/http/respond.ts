import { constants, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import { InvalidRequestError, type OciappRuntimeError } from "../../errors.js";
import { Deadlines } from "../deadlines.js";
import { AgentUnavailableError, PayloadTooLargeError } from "../errors.js";
import { errorBody, statusOf } from "./wire.js";

/** The stream's peer went away before the body ended: nothing is answered. */
export class ClientGone extends Error {}

/** True while an answer can still be sent on `stream`. */
export function answerable(stream: ServerHttp2Stream): boolean {
  return !stream.destroyed && !stream.closed && !stream.headersSent;
}

/**
 * Sends `body` as the whole answer and then resets the stream with NO_ERROR when the request body
 * was not read to its end: RFC 9113 §8.1 lets a server answer before the request is complete and
 * tell the client to stop sending, so a refused body is never read.
 */
export function sendJson(
  stream: ServerHttp2Stream,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  sendText(stream, status, JSON.stringify(body), "application/json", headers);
}

export function sendText(
  stream: ServerHttp2Stream,
  status: number,
  text: string,
  contentType: string,
  headers: Record<string, string> = {},
): void {
  if (!answerable(stream)) return;
  const payload = Buffer.from(text);
  const head = {
    ":status": status,
    "content-type": contentType,
    "content-length": payload.length,
    ...headers,
  };
  // Node marks a HEAD request's stream (headRequest, untyped in @types/node); a body on it is an error.
  if ((stream as ServerHttp2Stream & { headRequest?: boolean }).headRequest) {
    // An answer to HEAD has headers only (RFC 9110 §9.3.2).
    stream.respond(head, { endStream: true });
    return;
  }
  stream.respond(head);
  if (stream.readableEnded) {
    // The whole request was read (every call's case): nothing to refuse, so no callback. A callback
    // given to end() is called with one more new ERR_STREAM_DESTROYED (a stack captured each time)
    // whenever the stream closes before its write is reported done, which is the usual order once
    // the client has its answer: about 7 us of the agent's CPU per call.
    stream.end(payload);
    return;
  }
  stream.end(payload, () => {
    // The request body, if the client is still sending one, is not wanted.
    if (!stream.closed && !stream.readableEnded) stream.close(constants.NGHTTP2_NO_ERROR);
  });
}

/** Answers an error as `{"error": {...}}` with its status (or `status` when given). */
export function sendError(stream: ServerHttp2Stream, error: OciappRuntimeError, status?: number): void {
  sendJson(stream, status ?? statusOf(error), errorBody(error));
}

/** The deadlines of body reads under way: every read of an agent has the same bodyTimeout. */
const bodyDeadlines = new Deadlines();

/**
 * Bytes of request bodies buffered at once, across all streams: each body is bounded on its own,
 * but without a total, many bodies arriving at once (a token's quota.inFlight x maxPayloadBytes is
 * 4 GiB by default) could hold more memory than the agent has.
 */
export class BodyBudget {
  private used = 0;

  /** `limit`: bytes, at most, held by all bodies being read at once. */
  constructor(readonly limit: number) {}

  /** Takes `bytes` when they fit, else takes nothing and returns false. */
  take(bytes: number): boolean {
    if (this.used + bytes > this.limit) return false;
    this.used += bytes;
    return true;
  }

  give(bytes: number): void {
    this.used -= bytes;
  }
}

/**
 * Reads a request body of at most `limit` bytes within `timeoutMs`: a declared content-length over
 * the limit is refused before a byte is read, and the count is checked on every chunk, so at most
 * `limit` bytes (plus one HTTP/2 flow-control window) are ever buffered. Every chunk is also taken
 * from `budget` (given back once the body is read or refused): a body that does not fit is refused
 * with AgentUnavailableError (503; the call did not run). Rejects with PayloadTooLargeError,
 * InvalidRequestError (the body was too slow), AgentUnavailableError or ClientGone.
 */
export function readBody(
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  limit: number,
  timeoutMs: number,
  budget: BodyBudget,
): Promise<Buffer> {
  const declared = Number(headers["content-length"] ?? Number.NaN);
  if (declared > limit) return Promise.reject(new PayloadTooLargeError(limit));
  const busy = () =>
    new AgentUnavailableError(
      `the agent is buffering ${budget.limit} bytes of request bodies (limits.maxBufferedBytes); the call did not run`,
    );
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let finished = false;
    const deadline = bodyDeadlines.add(timeoutMs, () => {
      finish(new InvalidRequestError(`the request body did not arrive within ${timeoutMs} ms`));
    });
    const onData = (chunk: Buffer) => {
      if (size + chunk.length > limit) return finish(new PayloadTooLargeError(limit));
      if (!budget.take(chunk.length)) return finish(busy());
      size += chunk.length;
      chunks.push(chunk);
    };
    const onEnd = () => finish(undefined);
    const onClose = () => finish(new ClientGone("the client reset the stream"));
    const finish = (error: Error | undefined) => {
      if (finished) return;
      finished = true;
      // Given back here: once read, the body is parsed at once and no longer held as bytes.
      budget.give(size);
      bodyDeadlines.cancel(deadline);
      stream.off("data", onData);
      stream.off("end", onEnd);
      stream.off("close", onClose);
      stream.off("aborted", onClose);
      if (error) {
        stream.pause();
        reject(error);
      } else {
        resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size));
      }
    };
    stream.on("data", onData);
    stream.on("end", onEnd);
    stream.on("close", onClose);
    stream.on("aborted", onClose);
  });
}
