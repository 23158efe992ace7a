import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import type { Readable } from "node:stream";
import { RegistryError } from "./errors.js";

export interface HttpRequest {
  method: string;
  url: URL;
  headers?: Record<string, string | number>;
  /** A whole body, or a function making a fresh stream (a request may be sent again after a 401). */
  body?: Buffer | (() => Readable);
  /** PEM CA for https. */
  ca?: string | Buffer;
  signal?: AbortSignal;
  /** ms without progress (connect, headers, each chunk) before the request fails. */
  idleTimeout: number;
}

/**
 * One HTTP/1.1 request with node:http(s): the response headers are awaited and the body is left to
 * the caller (readBounded or a stream). No redirects are followed here.
 */
export function send(request: HttpRequest): Promise<IncomingMessage> {
  const make = request.url.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise<IncomingMessage>((resolve, reject) => {
    const outgoing = make(request.url, {
      method: request.method,
      headers: request.headers,
      ...(request.ca === undefined ? {} : { ca: request.ca }),
      ...(request.signal === undefined ? {} : { signal: request.signal }),
      timeout: request.idleTimeout,
    });
    outgoing.on("timeout", () =>
      outgoing.destroy(
        new RegistryError(
          "OCIAPP_REGISTRY",
          `${request.url.host} did not answer within ${request.idleTimeout} ms`,
        ),
      ),
    );
    outgoing.on("error", (error) => {
      reject(
        error instanceof RegistryError || error.name === "AbortError"
          ? error
          : new RegistryError("OCIAPP_REGISTRY", `${request.method} ${request.url.host}: ${error.message}`, {
              cause: error,
            }),
      );
    });
    outgoing.on("response", (response) => {
      response.setTimeout(request.idleTimeout, () =>
        response.destroy(
          new RegistryError("OCIAPP_REGISTRY", `${request.url.host} stalled for ${request.idleTimeout} ms`),
        ),
      );
      resolve(response);
    });
    const body = request.body;
    if (body === undefined) outgoing.end();
    else if (Buffer.isBuffer(body)) outgoing.end(body);
    else {
      const stream = body();
      stream.on("error", (error) => outgoing.destroy(error));
      stream.pipe(outgoing);
    }
  });
}

/** Reads a whole response body of at most `limit` bytes (RegistryError past it). */
export async function readBounded(response: IncomingMessage, limit: number, what: string): Promise<Buffer> {
  const declared = Number(response.headers["content-length"] ?? Number.NaN);
  if (declared > limit) {
    response.destroy();
    throw new RegistryError("OCIAPP_REGISTRY", `${what} is ${declared} bytes, over the ${limit}-byte limit`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of response as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      response.destroy();
      throw new RegistryError("OCIAPP_REGISTRY", `${what} is over the ${limit}-byte limit`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

/** Drains and discards a response body (at most 64 KiB are read; past that the socket is dropped). */
export async function discard(response: IncomingMessage): Promise<void> {
  try {
    await readBounded(response, 64 * 1024, "an answer");
  } catch {
    // dropped
  }
}
