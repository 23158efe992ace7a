import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect,
  constants,
  type OutgoingHttpHeaders,
  type SecureClientSessionOptions,
} from "node:http2";
import type { Readable } from "node:stream";
import { RequestTimeoutError } from "../../errors.js";
import { type DeadlineEntry, Deadlines } from "../deadlines.js";
import { AgentError, CallLostError } from "../errors.js";

/** Sessions on which the agent's SETTINGS frame arrived: only there can a request have been processed. */
const established = new WeakSet<ClientHttp2Session>();
/** The last stream id an agent's GOAWAY says it processed (RFC 9113 §6.8): later streams never ran. */
const goawayLast = new WeakMap<ClientHttp2Session, number>();

/** TLS and keepalive settings shared by every link of one RemoteExecutor. */
export interface LinkOptions {
  /** PEM of the CA that signs the agents' certificates (default: Node's CAs). */
  ca?: string | Buffer;
  /** PEM client certificate and key, for agents that require mutual TLS. */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** ms to connect (TCP and TLS). */
  connectTimeout: number;
  /** ms between HTTP/2 PINGs while calls are in flight, and ms a PING may take before the connection is given up. */
  keepaliveInterval: number;
  keepaliveTimeout: number;
  /** Largest answer body read, bytes. */
  maxResponseBytes: number;
}

/** The call did not reach the agent, so it may be sent to another one. */
export class NeverSent extends Error {}

export interface Answer {
  status: number;
  body: Buffer;
}

export interface Exchange {
  method: string;
  path: string;
  headers?: OutgoingHttpHeaders;
  /** A whole body, or a stream piped as the body (an upload). */
  body?: Buffer | Readable;
  signal?: AbortSignal;
  /** ms until the client gives the call up (RequestTimeoutError); none when undefined. */
  deadline?: number;
  timeoutMs?: number;
  /**
   * A health check, not a caller's call: it does not count as outstanding (so never toward
   * maxOutstanding, and no keepalive PINGs for it) and keeps nothing alive (an unref'd session and timer).
   */
  background?: boolean;
}

/**
 * One agent address and its HTTP/2 session (opened on first use, opened again after it ends). It
 * counts calls outstanding (for picking), remembers which digests it served (affinity), and while
 * calls are outstanding sends PINGs (RFC 9113 §6.7): a connection whose PING goes unanswered for
 * keepaliveTimeout is destroyed, so a cut link fails its calls (CallLostError) instead of hanging.
 * The session is unref'd whenever nothing is outstanding, so an idle link never keeps the process alive.
 */
export class AgentLink {
  outstanding = 0;
  healthy = true;
  /** The agent's id, from its last status. */
  agentId: string | undefined;
  lastError: string | undefined;
  /** Digests this agent has ready containers for (its status, and calls it answered). */
  readonly warm = new Set<string>();
  private session: ClientHttp2Session | undefined;
  private closed = false;
  /** Deadlines of the calls outstanding here (health checks have a timer each: they are unref'd). */
  private readonly deadlines = new Deadlines();

  constructor(
    /** `https://host:port` as configured. */
    readonly url: string,
    /** Where to connect (an address the configured name resolved to), and the TLS name to verify. */
    readonly address: string,
    private readonly servername: string | undefined,
    private readonly options: LinkOptions,
  ) {}

  /** Sends one request and reads the whole answer (bounded). Rejects with NeverSent, CallLostError, RequestTimeoutError or the signal's reason. */
  request(exchange: Exchange): Promise<Answer> {
    if (this.closed) return Promise.reject(new NeverSent(`the link to ${this.url} is closed`));
    let session: ClientHttp2Session;
    let stream: ClientHttp2Stream;
    try {
      session = this.open();
      stream = session.request({ ":method": exchange.method, ":path": exchange.path, ...exchange.headers });
    } catch (error) {
      // A session that got GOAWAY or was destroyed refuses new streams synchronously.
      this.drop();
      return Promise.reject(new NeverSent(`${this.url}: ${(error as Error).message}`, { cause: error }));
    }
    const counted = exchange.background !== true;
    if (counted) this.begin();
    return new Promise<Answer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let status = 0;
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      let deadline: DeadlineEntry | undefined;
      const { signal } = exchange;
      const finish = (error: unknown, answer?: Answer) => {
        if (settled) return;
        settled = true;
        if (timer !== undefined) clearTimeout(timer);
        if (deadline !== undefined) this.deadlines.cancel(deadline);
        signal?.removeEventListener("abort", onAbort);
        if (counted) this.end();
        if (error !== undefined) {
          if (!stream.closed) stream.close(constants.NGHTTP2_CANCEL);
          reject(error);
        } else resolve(answer as Answer);
      };
      const onAbort = () => finish(signal?.reason);
      if (signal?.aborted) {
        finish(signal.reason);
        return;
      }
      signal?.addEventListener("abort", onAbort, { once: true });
      if (exchange.deadline !== undefined) {
        const expire = () => finish(new RequestTimeoutError(exchange.timeoutMs ?? exchange.deadline ?? 0));
        if (counted) deadline = this.deadlines.add(exchange.deadline, expire);
        else {
          timer = setTimeout(expire, exchange.deadline);
          timer.unref();
        }
      }
      stream.on("response", (headers) => {
        status = Number(headers[":status"]);
      });
      stream.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > this.options.maxResponseBytes) {
          finish(
            new AgentError(`agent ${this.url} answered more than ${this.options.maxResponseBytes} bytes`),
          );
        } else chunks.push(chunk);
      });
      stream.on("end", () => {
        // A stream ended by its session going away ends without an answer: 'close' classifies it.
        if (status !== 0) finish(undefined, { status, body: Buffer.concat(chunks, size) });
      });
      stream.on("error", () => undefined); // classified on 'close'
      stream.on("close", () => {
        if (settled) return;
        if (status !== 0 && stream.rstCode === constants.NGHTTP2_NO_ERROR) {
          // The agent answered and reset the rest of an unread request body (RFC 9113 §8.1).
          finish(undefined, { status, body: Buffer.concat(chunks, size) });
          return;
        }
        // Never processed (RFC 9113 §8.7): a stream the agent refused, one that never got an id, or one
        // on a connection where the agent never sent its SETTINGS (a TLS 1.3 server rejects a client
        // certificate after the client has already written its request).
        const last = goawayLast.get(session);
        const refused =
          stream.rstCode === constants.NGHTTP2_REFUSED_STREAM ||
          stream.id === undefined ||
          !established.has(session) ||
          (last !== undefined && stream.id > last);
        finish(
          refused
            ? new NeverSent(`agent ${this.url} refused the stream (it is going away)`)
            : new CallLostError(
                this.url,
                `the connection to agent ${this.url} ended during the call (${this.lastError ?? `stream reset with code ${stream.rstCode}`}); it may or may not have run`,
              ),
        );
      });
      const body = exchange.body;
      if (body === undefined) stream.end();
      else if (Buffer.isBuffer(body)) stream.end(body);
      else {
        body.on("error", (error) => finish(error));
        body.pipe(stream);
      }
    });
  }

  /** Ends the session (calls in flight get CallLostError) and forgets it. */
  close(): void {
    this.closed = true;
    this.drop();
  }

  /** Destroys the current session, if any: the next request opens a new one. */
  drop(error?: Error): void {
    const session = this.session;
    this.session = undefined;
    if (session && !session.destroyed) session.destroy(error);
  }

  private open(): ClientHttp2Session {
    const current = this.session;
    if (current && !current.closed && !current.destroyed) return current;
    const { ca, cert, key, connectTimeout } = this.options;
    const tls: SecureClientSessionOptions = { ALPNProtocols: ["h2"], maxSessionMemory: 64 };
    if (ca !== undefined) tls.ca = ca;
    if (cert !== undefined) tls.cert = cert;
    if (key !== undefined) tls.key = key;
    if (this.servername !== undefined) tls.servername = this.servername;
    // noDelay: calls are small request/answer exchanges (net.connect's option, passed through by tls).
    const session = connect(this.address, { ...tls, noDelay: true } as SecureClientSessionOptions);
    this.session = session;
    session.unref();
    const connecting = setTimeout(() => {
      if (!session.connecting) return;
      session.destroy(new Error(`no connection to ${this.url} within ${connectTimeout} ms`));
    }, connectTimeout);
    connecting.unref();
    session.once("connect", () => clearTimeout(connecting));
    session.once("remoteSettings", () => established.add(session));
    session.on("error", (error: Error) => {
      this.lastError = error.message;
    });
    session.on("close", () => {
      clearTimeout(connecting);
      if (this.session === session) this.session = undefined;
    });
    session.on("goaway", (_code: number, lastStreamID: number) => {
      goawayLast.set(session, lastStreamID);
      // The agent is draining: new calls go elsewhere; calls in flight on this session finish.
      if (this.session === session) this.session = undefined;
      this.healthy = false;
    });
    this.startPings(session);
    return session;
  }

  private begin(): void {
    if (this.outstanding++ === 0) this.session?.ref();
  }

  private end(): void {
    if (--this.outstanding === 0) this.session?.unref();
  }

  /**
   * One PING timer per session (not per call): each tick pings only while calls are outstanding, and
   * destroys the session when the answer does not come within keepaliveTimeout.
   */
  private startPings(session: ClientHttp2Session): void {
    const { keepaliveInterval, keepaliveTimeout } = this.options;
    let waiting = false;
    const timer = setInterval(() => {
      if (this.outstanding === 0 || waiting || session.destroyed || session.connecting) return;
      waiting = true;
      const silent = setTimeout(() => {
        this.lastError = `no PING answer within ${keepaliveTimeout} ms`;
        this.healthy = false;
        session.destroy();
      }, keepaliveTimeout);
      try {
        session.ping((error) => {
          waiting = false;
          clearTimeout(silent);
          if (error && !session.destroyed) session.destroy();
        });
      } catch {
        waiting = false;
        clearTimeout(silent);
      }
    }, keepaliveInterval);
    timer.unref();
    session.once("close", () => clearInterval(timer));
  }
}
