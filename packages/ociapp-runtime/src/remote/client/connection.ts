import type { ClientHttp2Session } from "node:http2";

// What an AgentLink knows of one HTTP/2 session to its agent, and what the session's end says about
// the calls that were on it.

/**
 * Streams one session may reset (RST_STREAM, one per aborted or timed-out call) before the link moves
 * new calls to a new session and lets the old one finish. HTTP/2 servers bound the resets a client
 * sends, against the "rapid reset" attack (CVE-2023-44487): nghttp2, which node:http2 servers run,
 * allows a burst of 1,000 and 33 more per second (nghttp2 1.57 `stream_reset_rate_limit`), then ends
 * the session with GOAWAY, failing every call on it. Half the burst leaves room for the refill's
 * absence and for resets the server counts that the client does not (a stream reset as it completed).
 */
export const RESETS_PER_SESSION = 500;

/** One HTTP/2 session to the agent and what the link knows of it. */
export interface Connection {
  readonly session: ClientHttp2Session;
  /** Counted calls outstanding on this session: it is ref'd while there are any, and PINGed. */
  calls: number;
  /** Streams this client reset on it. */
  resets: number;
  /** The agent's SETTINGS frame arrived: only then can a request on it have been processed. */
  established: boolean;
  /** The last stream id the agent's GOAWAY says it processed (RFC 9113 §6.8): later streams never ran. */
  goawayLast: number | undefined;
  /** Its reset budget is used: it takes no new calls and is closed when its last call ends. */
  retired: boolean;
  /** The session's error, if it had one. */
  error: Error | undefined;
  /** This client ended it (connect or PING timeout, close()), rather than the agent or the network. */
  endedHere: boolean;
}

/**
 * Whether the connection was refused (false once the agent's SETTINGS have arrived): whether a
 * connection whose agent's SETTINGS never arrived was refused by the agent before its
 * HTTP/2 session began, so that no request on it was processed. Node's server makes the session,
 * and writes its SETTINGS first, only once the TLS handshake (the client certificate's check
 * included) has succeeded; TLS 1.3 checks the client's certificate after the client has finished
 * its side of the handshake and may already have written its request (RFC 8446 §4.4.2.4). So: a TLS
 * alert, or a connection the agent closed (this client did not: TCP delivers in order, so the
 * SETTINGS would have come before the close). A connection this client gave up (its PING went
 * unanswered: a link dead one way) may have carried a request the agent ran.
 */
export function refusedConnection(connection: Connection, streamError: Error | undefined): boolean {
  if (connection.established) return false;
  // The socket's error reaches the streams, and not always the session.
  return tlsRefused(streamError ?? connection.error) || !connection.endedHere;
}

/** Whether an error is a TLS alert from the agent (a client certificate missing or not trusted). */
function tlsRefused(error: Error | undefined): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === "string" && code.startsWith("ERR_SSL_") && code.includes("ALERT");
}
