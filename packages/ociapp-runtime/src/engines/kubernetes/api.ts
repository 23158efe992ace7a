import type { IncomingMessage } from "node:http";
import { Agent, type AgentOptions, request as httpsRequest, type RequestOptions } from "node:https";
import type { KubeConfig } from "@kubernetes/client-node";
import { EngineUnavailableError } from "../../errors.js";

/** Longest JSON answer read from the API server (a pod list of a busy node is a few MiB). */
const MAX_BODY_BYTES = 32 * 1024 * 1024;

/** Socket errors that mean the API server cannot be reached at all (rather than refusing a request). */
const UNREACHABLE = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ETIMEDOUT",
  "EPIPE",
]);

/** A `Status` object the API server answers a refused request with (Kubernetes API, meta/v1 Status). */
export interface ApiStatus {
  kind?: string;
  message?: string;
  reason?: string;
  code?: number;
}

/** The API server answered a request with an error status; `status` is its HTTP status. */
export class KubernetesStatusError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string | undefined,
    message: string,
  ) {
    super(message);
    this.name = "KubernetesStatusError";
  }
}

/**
 * The HTTP transport to the API server: the kubeconfig (`@kubernetes/client-node`'s KubeConfig: files,
 * in-cluster service-account token with rotation, exec and OIDC plugins) supplies the endpoint, the
 * TLS material and the Authorization header for every request; the requests themselves go through one
 * keep-alive `https.Agent` of ours, so that each takes an AbortSignal and a timeout, every body read is
 * bounded, and a long-lived stream (a watch, a log) can be unref'd: client-node's own Watch and Log
 * classes do neither, and its generated API client makes a TLS connection per call.
 *
 * Errors: EngineUnavailableError naming `where` when the server cannot be reached, does not answer in
 * `timeoutMs` or the caller's signal ends the wait; KubernetesStatusError (internal) for an error
 * status, which callers map (404 to "gone", 409 to "exists", the rest to EngineUnavailableError).
 */
export class KubeApi {
  /** How errors name the server: "the Kubernetes API server at https://127.0.0.1:6443". */
  readonly where: string;
  private readonly server: URL;
  private agent: Agent | undefined;
  private agentKey = "";

  constructor(
    private readonly config: KubeConfig,
    private readonly timeoutMs: number,
  ) {
    const cluster = config.getCurrentCluster();
    if (!cluster?.server) throw new EngineUnavailableError("the kubeconfig names no cluster server");
    this.server = new URL(cluster.server);
    this.where = `the Kubernetes API server at ${this.server.origin}`;
  }

  /** One JSON request; resolves with the parsed answer (2xx), rejects as described on the class. */
  async request<T>(
    method: "GET" | "POST" | "DELETE" | "PATCH",
    path: string,
    options: { body?: unknown; signal?: AbortSignal; action: string; contentType?: string } = {
      action: "answer",
    },
  ): Promise<T> {
    const response = await this.send(
      method,
      path,
      options.action,
      options.signal,
      options.body,
      options.contentType,
    );
    const text = await readBody(response, MAX_BODY_BYTES, options.signal).catch((error: unknown) => {
      throw this.failure(options.action, error, options.signal);
    });
    const status = response.statusCode ?? 0;
    if (status >= 200 && status < 300) return (text ? JSON.parse(text) : {}) as T;
    throw statusError(status, text, `${this.where} refused to ${options.action}`);
  }

  /**
   * A streaming GET (a watch, a log follow). Resolves with the response once its headers arrived with
   * a 2xx status; its socket is unref'd (a stream never keeps the process alive) and no timeout applies
   * to the body: the caller ends it with the signal or `destroy()`.
   */
  async stream(path: string, action: string, signal?: AbortSignal): Promise<IncomingMessage> {
    const response = await this.send("GET", path, action, signal, undefined, undefined, true);
    const status = response.statusCode ?? 0;
    if (status >= 200 && status < 300) {
      response.socket?.unref();
      return response;
    }
    const text = await readBody(response, 64 * 1024, signal).catch(() => "");
    throw statusError(status, text, `${this.where} refused to ${action}`);
  }

  /** Ends the kept-alive connections. */
  close(): void {
    this.agent?.destroy();
    this.agent = undefined;
  }

  private async send(
    method: string,
    path: string,
    action: string,
    signal: AbortSignal | undefined,
    body: unknown,
    contentType: string | undefined,
    streaming = false,
  ): Promise<IncomingMessage> {
    signal?.throwIfAborted();
    const options: RequestOptions = { headers: {} };
    try {
      await this.config.applyToHTTPSOptions(options);
    } catch (error) {
      throw new EngineUnavailableError(
        `the kubeconfig's credentials for ${this.where} could not be read: ${(error as Error).message}`,
        { cause: error },
      );
    }
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string | number> = {
      ...(options.headers as Record<string, string>),
      accept: "application/json",
    };
    if (payload) {
      headers["content-type"] = contentType ?? "application/json";
      headers["content-length"] = payload.length;
    }
    return new Promise<IncomingMessage>((resolve, reject) => {
      const request = httpsRequest(
        {
          protocol: this.server.protocol,
          hostname: this.server.hostname.replace(/^\[|\]$/g, ""),
          port: this.server.port || 443,
          path: `${this.server.pathname.replace(/\/$/, "")}${path}`,
          method,
          headers,
          agent: this.agentFor(options),
          ...(options.servername ? { servername: options.servername } : {}),
        },
        (response) => {
          clearTimeout(timer);
          if (!streaming) {
            // The body read is bounded by the same timeout as the headers were.
            timer = setTimeout(() => response.destroy(timeoutError()), this.timeoutMs);
            timer.unref();
            response.once("close", () => clearTimeout(timer));
          }
          resolve(response);
        },
      );
      const timeoutError = () =>
        new EngineUnavailableError(`${this.where} did not ${action} within ${this.timeoutMs} ms`);
      let timer = setTimeout(() => request.destroy(timeoutError()), this.timeoutMs);
      timer.unref();
      const onAbort = () =>
        request.destroy(signal?.reason instanceof Error ? signal.reason : new Error("aborted"));
      signal?.addEventListener("abort", onAbort, { once: true });
      request.once("close", () => signal?.removeEventListener("abort", onAbort));
      request.once("error", (error) => {
        clearTimeout(timer);
        reject(this.failure(action, error, signal));
      });
      request.end(payload);
    });
  }

  /** One agent per distinct TLS material (a rotated client certificate gets a new one). */
  private agentFor(options: RequestOptions): Agent {
    const tls: AgentOptions = {
      keepAlive: true,
      maxSockets: 16,
      ...(options.ca ? { ca: options.ca } : {}),
      ...(options.cert ? { cert: options.cert } : {}),
      ...(options.key ? { key: options.key } : {}),
      ...(options.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}),
    };
    const key = [tls.ca, tls.cert, tls.key, tls.rejectUnauthorized].map((part) => String(part)).join("|");
    if (!this.agent || key !== this.agentKey) {
      this.agent?.destroy();
      this.agent = new Agent(tls);
      this.agentKey = key;
      // (Node's keep-alive agent unrefs its idle sockets itself: they never keep the process alive.)
    }
    return this.agent;
  }

  private failure(action: string, error: unknown, signal: AbortSignal | undefined): Error {
    if (error instanceof EngineUnavailableError) return error;
    if (signal?.aborted) {
      return new EngineUnavailableError(`${this.where} did not ${action} in time`, { cause: signal.reason });
    }
    const code = (error as NodeJS.ErrnoException)?.code;
    if (code && UNREACHABLE.has(code)) {
      return new EngineUnavailableError(`cannot reach ${this.where} (${code}) while trying to ${action}`, {
        cause: error,
      });
    }
    return new EngineUnavailableError(
      `${this.where} failed to ${action}: ${(error as Error)?.message ?? String(error)}`,
      {
        cause: error,
      },
    );
  }
}

function statusError(status: number, text: string, prefix: string): KubernetesStatusError {
  let parsed: ApiStatus | undefined;
  try {
    parsed = JSON.parse(text) as ApiStatus;
  } catch {
    parsed = undefined;
  }
  const detail = parsed?.message ?? (text.slice(0, 300) || `HTTP ${status}`);
  return new KubernetesStatusError(status, parsed?.reason, `${prefix}: ${detail} (HTTP ${status})`);
}

/** Reads a whole body as UTF-8, at most `limit` bytes (past it the response is destroyed). */
function readBody(response: IncomingMessage, limit: number, signal?: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onAbort = () => response.destroy(new Error("aborted"));
    signal?.addEventListener("abort", onAbort, { once: true });
    response.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        response.destroy(new Error(`the answer is larger than ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    response.once("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    response.once("error", reject);
    response.once("close", () => {
      signal?.removeEventListener("abort", onAbort);
      if (!response.complete) reject(new Error("the connection closed before the answer was complete"));
    });
  });
}

/** Percent-encodes query parameters (undefined ones are left out). */
export function query(params: Record<string, string | number | boolean | undefined>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value !== undefined) search.set(key, String(value));
  const text = search.toString();
  return text ? `?${text}` : "";
}
