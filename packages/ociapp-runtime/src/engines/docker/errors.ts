import { EngineUnavailableError } from "../../errors.js";

/** What dockerode's modem attaches to a failed request. */
export interface ModemError extends Error {
  statusCode?: number;
  code?: string;
  json?: { message?: string } | string | null;
}

/** Socket errors that mean the engine cannot be reached at all (rather than refusing a request). */
const UNREACHABLE = new Set(["ECONNREFUSED", "ENOENT", "EACCES", "ECONNRESET", "EPIPE", "ETIMEDOUT"]);

/** The engine's own message for a failed request, else the error's. */
export function describe(error: unknown): string {
  const modem = error as ModemError;
  const json = modem?.json;
  const detail = typeof json === "object" && json?.message ? json.message : undefined;
  return (detail ?? (typeof json === "string" && json ? json : modem?.message) ?? String(error)).trim();
}

/** The HTTP status of a failed Engine API request, when it got that far. */
export function statusOf(error: unknown): number | undefined {
  return (error as ModemError)?.statusCode;
}

/**
 * Maps a dockerode failure to the runtime's error: an unreachable engine (naming `where`, the socket
 * or host it tried) vs an API refusal.
 */
export function engineError(
  action: string,
  error: unknown,
  where = "the Docker engine",
): EngineUnavailableError {
  const code = (error as ModemError)?.code;
  if (code && UNREACHABLE.has(code)) {
    return new EngineUnavailableError(`cannot reach ${where} (${code}) while trying to ${action}`, {
      cause: error,
    });
  }
  return new EngineUnavailableError(`${where} failed to ${action}: ${describe(error)}`, { cause: error });
}

/** Settles with `promise`, or rejects once `signal` aborts: a caller stops waiting on a wedged engine. */
export function untilAborted<T>(
  promise: Promise<T>,
  signal: AbortSignal | undefined,
  action: string,
): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () =>
      reject(
        new EngineUnavailableError(`the Docker engine did not ${action} in time`, { cause: signal.reason }),
      );
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
