import { type ClientHttp2Session, type ClientHttp2Stream, connect } from "node:http2";

/** A client session to a test agent over TLS; errors are ignored (the tests read outcomes). */
export function session(url: string, ca: Buffer): ClientHttp2Session {
  const made = connect(url, { ca });
  made.on("error", () => undefined);
  return made;
}

export interface Answer {
  status: number;
  text: string;
  /** The parsed body, or undefined when it is not JSON. */
  json: unknown;
}

/** The answer on `stream`, once it has closed. */
export function answer(stream: ClientHttp2Stream): Promise<Answer> {
  return new Promise((resolve) => {
    let status = 0;
    const chunks: Buffer[] = [];
    stream.on("error", () => undefined);
    stream.on("response", (headers) => {
      status = Number(headers[":status"]);
    });
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("close", () => {
      const text = Buffer.concat(chunks).toString();
      let json: unknown;
      try {
        json = text ? JSON.parse(text) : undefined;
      } catch {
        json = undefined;
      }
      resolve({ status, text, json });
    });
  });
}

/** One request on `on` with a whole body (or none). */
export function request(
  on: ClientHttp2Session,
  headers: Record<string, string | number>,
  body?: Buffer | string,
): Promise<Answer> {
  const stream = on.request(headers);
  const answered = answer(stream);
  stream.end(body);
  return answered;
}

/** Resolves with `value` after `ms`. */
export function after<T>(ms: number, value: T): Promise<T> {
  return new Promise((resolve) => setTimeout(() => resolve(value), ms).unref());
}

/** The `authorization` header for a bearer token (RFC 6750). */
export const auth = (token: string) => ({ authorization: `Bearer ${token}` });
