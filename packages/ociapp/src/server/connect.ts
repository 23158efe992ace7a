import { connect, type Socket } from "node:net";
import { OciappError } from "../errors.js";

/** The host's socket is not there yet (ENOENT), or nobody accepts on it yet (ECONNREFUSED, EAGAIN). */
const RETRYABLE = new Set(["ENOENT", "ECONNREFUSED", "EAGAIN"]);
const FIRST_DELAY_MS = 10;
const MAX_DELAY_MS = 250;

/** serve() in connect mode could not reach the host: the CLI exits 3 with this one line. */
export class OciappConnectError extends OciappError {
  declare readonly code: "OCIAPP_CONNECT";
  readonly path: string;

  constructor(path: string, message: string, options?: { cause?: unknown }) {
    super("OCIAPP_CONNECT", message, options);
    this.path = path;
  }
}

/**
 * Connects to the host's socket at path, retrying while it is missing or refuses (the host may not be
 * listening yet) with a backoff from 10 ms doubling to 250 ms, for at most timeoutMs in all. Any other
 * error ends it at once. Rejects with OciappConnectError, or with signal's reason once it aborts.
 */
export async function connectToHost(
  path: string,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<Socket> {
  const deadline = Date.now() + timeoutMs;
  let delay = FIRST_DELAY_MS;
  for (let attempt = 1; ; attempt++) {
    signal?.throwIfAborted();
    let code: string | undefined;
    try {
      return await attemptConnect(path, deadline - Date.now(), signal);
    } catch (error) {
      signal?.throwIfAborted();
      code = (error as NodeJS.ErrnoException).code;
      if (code === undefined || !RETRYABLE.has(code)) {
        throw new OciappConnectError(
          path,
          `cannot connect to the host at ${path}: ${(error as Error).message}`,
          { cause: error },
        );
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new OciappConnectError(
          path,
          `no host at ${path} within ${timeoutMs} ms (${attempt} attempts, last: ${code}): exiting`,
          { cause: error },
        );
      }
      await sleep(Math.min(delay, remaining), signal);
      delay = Math.min(delay * 2, MAX_DELAY_MS);
    }
  }
}

/** One connect(2), bounded by ms (a Unix connect does not hang, but nothing here waits unbounded). */
function attemptConnect(path: string, ms: number, signal: AbortSignal | undefined): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    const done = (error?: Error): void => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      socket.removeListener("connect", onConnect);
      socket.removeListener("error", onError);
      if (error === undefined) {
        resolve(socket);
        return;
      }
      socket.destroy();
      reject(error);
    };
    const onConnect = (): void => done();
    const onError = (error: Error): void => done(error);
    const onAbort = (): void => done(signal?.reason as Error);
    const timer = setTimeout(
      () => done(Object.assign(new Error("connect timed out"), { code: "ECONNREFUSED" })),
      Math.max(1, ms),
    );
    socket.once("connect", onConnect);
    socket.once("error", onError);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
