import {
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
import { type Connection, RESETS_PER_SESSION, refusedConnection } from "./connection.js";

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
export class NeverSent extends Error {
  constructor(
    message: string,
    /**
     * The agent refused it on a session that was up (GOAWAY, REFUSED_STREAM) rather than being
     * unreachable: a new session to the same agent may take it.
     */
    readonly freshSession = false,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

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
  /** Sessions opened so far (a new one after the last ended, went away or used its reset budget). */
  sessions = 0;
  /** The session new calls go on. */
  private connection: Connection | undefined;
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
    let connection: Connection;
    let stream: ClientHttp2Stream;
    try {
      connection = this.open();
      stream = connection.session.request({
        ":method": exchange.method,
        ":path": exchange.path,
        ...exchange.headers,
      });
    } catch (error) {
      // A session that got GOAWAY, was destroyed or ran out of stream ids refuses new streams
      // synchronously: nothing was sent, and a new session may take the call.
      this.drop();
      return Promise.reject(
        new NeverSent(`${this.url}: ${(error as Error).message}`, true, { cause: error }),
      );
    }
    const counted = exchange.background !== true;
    if (counted) this.begin(connection);
    return new Promise<Answer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let status = 0;
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      let deadline: DeadlineEntry | undefined;
      const { signal, body } = exchange;
      const finish = (error: unknown, answer?: Answer) => {
        if (settled) return;
        settled = true;
        if (timer !== undefined) clearTimeout(timer);
        if (deadline !== undefined) this.deadlines.cancel(deadline);
        signal?.removeEventListener("abort", onAbort);
        if (counted) this.end(connection);
        // An upload's file stream: pipe() only unpipes it when the HTTP/2 stream closes first (an
        // early answer such as 413, a reset, an abort), which would leave its descriptor open.
        if (body !== undefined && !Buffer.isBuffer(body) && !body.destroyed) body.destroy();
        if (error !== undefined) {
          if (!stream.closed) {
            stream.close(constants.NGHTTP2_CANCEL);
            this.reset(connection);
          }
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
      let streamError: Error | undefined;
      stream.on("error", (error: Error) => {
        streamError = error; // classified on 'close'
      });
      stream.on("close", () => {
        if (settled) return;
        if (status !== 0 && stream.rstCode === constants.NGHTTP2_NO_ERROR) {
          // The agent answered and reset the rest of an unread request body (RFC 9113 §8.1).
          finish(undefined, { status, body: Buffer.concat(chunks, size) });
          return;
        }
        // Never processed (RFC 9113 §8.7): a stream the agent refused, one that never got an id (the
        // connection was never made), one above the last stream id of the agent's GOAWAY, or one on
        // a connection the agent refused before its HTTP/2 session began (next). Anything else may
        // have run: an agent processes a request as soon as it reads it, whether or not its SETTINGS
        // frame ever reached the client.
        const last = connection.goawayLast;
        const refused =
          stream.rstCode === constants.NGHTTP2_REFUSED_STREAM ||
          stream.id === undefined ||
          refusedConnection(connection, streamError) ||
          (last !== undefined && stream.id > last);
        finish(
          refused
            ? new NeverSent(
                connection.established
                  ? `agent ${this.url} refused the stream (its session is going away)`
                  : `agent ${this.url} refused the connection (${(streamError ?? connection.error)?.message ?? this.lastError ?? "no error given"})`,
                connection.established,
              )
            : new CallLostError(
                this.url,
                `the connection to agent ${this.url} ended during the call (${this.lastError ?? `stream reset with code ${stream.rstCode}`}); it may or may not have run`,
              ),
        );
      });
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
    const connection = this.connection;
    this.connection = undefined;
    if (connection && !connection.session.destroyed) {
      connection.endedHere = true;
      connection.session.destroy(error);
    }
  }

  private open(): Connection {
    const current = this.connection;
    if (current && !current.session.closed && !current.session.destroyed) return current;
    const { ca, cert, key, connectTimeout } = this.options;
    const tls: SecureClientSessionOptions = { ALPNProtocols: ["h2"], maxSessionMemory: 64 };
    if (ca !== undefined) tls.ca = ca;
    if (cert !== undefined) tls.cert = cert;
    if (key !== undefined) tls.key = key;
    if (this.servername !== undefined) tls.servername = this.servername;
    // noDelay: calls are small request/answer exchanges (net.connect's option, passed through by tls).
    const session = connect(this.address, { ...tls, noDelay: true } as SecureClientSessionOptions);
    const connection: Connection = {
      session,
      calls: 0,
      resets: 0,
      established: false,
      goawayLast: undefined,
      retired: false,
      error: undefined,
      endedHere: false,
    };
    this.connection = connection;
    this.sessions++;
    session.unref();
    const connecting = setTimeout(() => {
      if (!session.connecting) return;
      connection.endedHere = true;
      session.destroy(new Error(`no connection to ${this.url} within ${connectTimeout} ms`));
    }, connectTimeout);
    connecting.unref();
    session.once("connect", () => clearTimeout(connecting));
    session.once("remoteSettings", () => {
      connection.established = true;
    });
    session.on("error", (error: Error) => {
      connection.error = error;
      this.lastError = error.message;
    });
    session.on("close", () => {
      clearTimeout(connecting);
      if (this.connection === connection) this.connection = undefined;
    });
    session.on("goaway", (code: number, lastStreamID: number) => {
      connection.goawayLast = lastStreamID;
      // A session this link already retired (its reset budget used) says nothing of the agent.
      if (this.connection !== connection) return;
      this.connection = undefined;
      // NO_ERROR is a graceful shutdown (the agent drains): new calls go to other agents until a
      // health check says otherwise. Another code ends this session only (the agent's protection
      // against a client's misbehaviour, such as too many resets): the next call opens a new one.
      if (code === constants.NGHTTP2_NO_ERROR) this.healthy = false;
      else this.lastError = `the agent ended the session with GOAWAY code ${code}`;
    });
    this.startPings(connection);
    return connection;
  }

  private begin(connection: Connection): void {
    this.outstanding++;
    if (connection.calls++ === 0) connection.session.ref();
  }

  private end(connection: Connection): void {
    this.outstanding--;
    if (--connection.calls > 0) return;
    connection.session.unref();
    if (connection.retired) connection.session.close();
  }

  /**
   * Counts a stream this client reset: at RESETS_PER_SESSION the session stops taking new calls
   * (the next one opens a new session) and is closed once its calls in flight have finished on it.
   * It is not closed before: a closing session takes no PING, so a cut link would hold those calls
   * until their deadlines instead of keepaliveTimeout.
   */
  private reset(connection: Connection): void {
    if (++connection.resets < RESETS_PER_SESSION || connection.retired) return;
    connection.retired = true;
    if (this.connection === connection) this.connection = undefined;
    if (connection.calls === 0) connection.session.close();
  }

  /**
   * One PING timer per session (not per call): each tick pings only while calls are outstanding on
   * it, and destroys the session when the answer does not come within keepaliveTimeout.
   */
  private startPings(connection: Connection): void {
    const { session } = connection;
    const { keepaliveInterval, keepaliveTimeout } = this.options;
    let waiting = false;
    const timer = setInterval(() => {
      if (connection.calls === 0 || waiting || session.destroyed || session.connecting) return;
      waiting = true;
      const silent = setTimeout(() => {
        this.lastError = `no PING answer within ${keepaliveTimeout} ms`;
        this.healthy = false;
        connection.endedHere = true;
        session.destroy();
      }, keepaliveTimeout);
      try {
        // An error here is a PING cancelled (the session is closing or gone), not a silent link.
        session.ping(() => {
          waiting = false;
          clearTimeout(silent);
        });
      } catch {
        // A closing session takes no PING (ERR_HTTP2_INVALID_SESSION).
        waiting = false;
        clearTimeout(silent);
      }
    }, keepaliveInterval);
    timer.unref();
    session.once("close", () => clearInterval(timer));
  }
}
