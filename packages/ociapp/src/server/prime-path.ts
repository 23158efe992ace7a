import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { connect, createServer, type Socket } from "node:net";
import { Duplex } from "node:stream";
import type { AnyApplication } from "../application.js";
import { PROTOCOL_VERSION } from "../protocol/constants.js";
import { encodeFrame } from "../protocol/frame.js";
import { Connection, type ConnectionContext } from "./connection.js";
import { type ParseResult, SchemaParser } from "./invoke.js";
import { ConcurrencyLimiter } from "./limiter.js";

/**
 * A request and the response execute would give for it, both as the app's schemas take them
 * (z.input). A prime() hook that returns one has the prime ping run the server's whole request path
 * on it, the app's own schemas included, instead of a schema-less stand-in.
 */
export interface PrimeSample {
  request: unknown;
  response: unknown;
}

/**
 * Requests the prime ping runs through the request path. V8 compiles a function the first time it
 * runs and moves it to its faster tiers as it keeps running (Sparkplug after a few dozen calls,
 * TurboFan after about a thousand on Node 20): a first call is only as fast as a warm one once the
 * path has run about that often.
 */
export const PRIME_REQUESTS = 2_000;
/**
 * Where no socket pair can be made (no abstract Unix sockets: not Linux), the stand-in is an
 * in-memory stream, run this few times: enough to compile the path, too few for TurboFan to
 * specialise Node's stream code on the stand-in (a real socket would then deoptimise it).
 */
export const PRIME_REQUESTS_IN_MEMORY = 30;
/** Upper bound on the priming's own time, in ms: a slow schema does not hold the prime ping long. */
export const PRIME_BUDGET_MS = 250;
/** How long making the socket pair may take, in ms (it takes well under one). */
const PAIR_TIMEOUT_MS = 1_000;

/** Schemas that take anything: the path of an app that gives no sample, without its schemas. */
const PASS_THROUGH = {
  safeParse: (value: unknown): ParseResult => ({ success: true, data: value }),
  safeParseAsync: async (value: unknown): Promise<ParseResult> => ({ success: true, data: value }),
};

/** The two ends of the stand-in connection, and a way to send the host's frames. */
interface StandIn {
  /** The server's end. */
  socket: Socket;
  send(frame: Buffer): void;
  /** Calls onAnswer whenever the server wrote something. */
  listen(onAnswer: () => void): void;
  close(): void;
}

/**
 * Runs the server's request path (frame reading and parsing, the Connection's dispatch, the runner
 * with its schemas and concurrency slot, the answer's encoding and write) PRIME_REQUESTS times, in
 * this process, on a stand-in connection whose answers go nowhere: a pair of connected sockets in the
 * abstract Unix namespace (nothing on disk, gone with the process), so Node's socket code is primed
 * for the sockets a host's connection uses. The app's execute never runs: a stand-in app answers with
 * the sample's response (or echoes the request when there is no sample). Everything stays within the
 * server's own limits, the stand-in holds one request at a time, and the run stops at
 * PRIME_BUDGET_MS. Resolves once the stand-in connection is gone; never rejects.
 */
export async function primeRequestPath(
  server: ConnectionContext,
  sample: PrimeSample | undefined,
): Promise<void> {
  let over = false;
  let answered: (() => void) | undefined;
  // The budget ends every wait, an answer that never comes (a stand-in connection gone) included.
  const timer = setTimeout(() => {
    over = true;
    answered?.();
  }, PRIME_BUDGET_MS);
  const pair = await socketPair().catch(() => undefined);
  const standIn = pair ?? inMemory();
  const requests = pair ? PRIME_REQUESTS : PRIME_REQUESTS_IN_MEMORY;
  standIn.listen(() => answered?.());
  const nextAnswer = (): Promise<void> =>
    new Promise<void>((resolve) => {
      answered = over ? undefined : resolve;
      if (over) resolve();
    });
  try {
    const helloSent = nextAnswer();
    const connection = new Connection(0, standIn.socket, standInContext(server, sample));
    await helloSent;
    standIn.send(
      encodeFrame({
        type: "hello",
        protocol: PROTOCOL_VERSION,
        role: "host",
        limits: {
          maxFrameBytes: server.maxFrameBytes,
          maxDepth: server.maxDepth,
          maxValues: server.maxValues,
        },
        capabilities: ["cancel", "ping"],
      }),
    );
    const payload = sample === undefined ? {} : sample.request;
    for (let i = 0; i < requests && !over; i++) {
      // One request at a time, as a sequential caller's would come: its answer ends the wait.
      const written = nextAnswer();
      standIn.send(encodeFrame({ type: "request", id: `~prime${i.toString(36)}`, payload }));
      await written;
      if (connection.state !== "open") break;
    }
  } catch {
    // A sample that does not encode within the limits: the path is as primed as it got.
  } finally {
    clearTimeout(timer);
    answered = undefined;
    standIn.close();
  }
}

/**
 * The server as the stand-in connection sees it: its limits, a concurrency slot of its own, none of
 * its counters, and an app with the app's schemas when it gave a sample (pass-through ones
 * otherwise) whose execute never calls the app's.
 */
function standInContext(server: ConnectionContext, sample: PrimeSample | undefined): ConnectionContext {
  const response = sample?.response;
  const app = {
    request: sample === undefined ? PASS_THROUGH : server.app.request,
    response: sample === undefined ? PASS_THROUGH : server.app.response,
    execute: async (input: unknown) => (sample === undefined ? input : response),
  } as unknown as AnyApplication;
  return {
    app,
    limiter: new ConcurrencyLimiter(1),
    requestParser: new SchemaParser(app.request),
    responseParser: new SchemaParser(app.response),
    errorStacks: false,
    primeSample: undefined,
    maxFrameBytes: server.maxFrameBytes,
    maxDepth: server.maxDepth,
    maxValues: server.maxValues,
    frameTimeoutMs: server.frameTimeoutMs,
    maxPendingRequests: 1,
    maxPendingBytes: server.maxPendingBytes,
    maxOutboundBytes: server.maxOutboundBytes,
    shuttingDown: false,
    hello: server.hello,
    prime: () => undefined,
    log: () => undefined,
    requestAccepted: () => undefined,
    requestSettled: () => undefined,
    connectionClosed: () => undefined,
  };
}

/** Two connected sockets through a listener in the abstract namespace, closed once they connect. */
async function socketPair(): Promise<StandIn> {
  if (process.platform !== "linux") throw new Error("abstract Unix sockets are Linux's");
  const signal = AbortSignal.timeout(PAIR_TIMEOUT_MS);
  const listener = createServer();
  let client: Socket | undefined;
  try {
    listener.listen(`\0ociapp-prime-${process.pid}-${randomBytes(12).toString("hex")}`);
    await once(listener, "listening", { signal });
    client = connect(listener.address() as string);
    // Errors after the pair is made (the peer reset) only end the priming: never the process.
    client.on("error", () => undefined);
    const [[server]] = await Promise.all([
      once(listener, "connection", { signal }) as Promise<[Socket]>,
      once(client, "connect", { signal }),
    ]);
    server.on("error", () => undefined);
    const end = client;
    return {
      socket: server,
      send: (frame) => end.write(frame),
      listen: (onAnswer) => end.on("data", onAnswer),
      close: () => {
        end.destroy();
        server.destroy();
      },
    };
  } catch (error) {
    client?.destroy();
    throw error;
  } finally {
    listener.close();
  }
}

/** An in-memory stand-in: what the host sends is pushed, what the server writes is dropped. */
function inMemory(): StandIn {
  let onWrite: (() => void) | undefined;
  const stream = new Duplex({
    read() {},
    write(_chunk, _encoding, callback) {
      callback();
      onWrite?.();
    },
  });
  return {
    // The Connection uses only what Duplex has of a Socket (setNoDelay is called optionally).
    socket: stream as unknown as Socket,
    send: (frame) => stream.push(frame),
    listen: (onAnswer) => {
      onWrite = onAnswer;
    },
    close: () => stream.destroy(),
  };
}

/** What a prime() hook returned, as a sample when it is one ({ request, response }), else undefined. */
export function primeSample(value: unknown): PrimeSample | undefined {
  if (typeof value !== "object" || value === null || !("request" in value) || !("response" in value)) {
    return undefined;
  }
  return { request: value.request, response: value.response };
}
