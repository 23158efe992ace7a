import { EngineUnavailableError } from "../errors.js";

/**
 * Settles with `promise`, or rejects with the signal's reason once it aborts. The caller stops
 * waiting; the operation itself is the owner's to stop (it got the same signal where it takes one).
 */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) {
    promise.catch(() => undefined);
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/**
 * Runs one engine operation with a deadline: past `ms` its signal aborts and the wait rejects with
 * EngineUnavailableError naming `action`, even if the engine ignores the signal (a wedged daemon
 * must not hang a start or a close()). `outer` (a close, a caller's signal) ends it early too.
 */
export async function engineCall<T>(
  run: (signal: AbortSignal) => Promise<T>,
  ms: number,
  action: string,
  outer?: AbortSignal,
): Promise<T> {
  const controller = new AbortController();
  const timer = setTimeout(
    () =>
      controller.abort(new EngineUnavailableError(`the container engine did not ${action} within ${ms} ms`)),
    ms,
  );
  const onOuter = () => controller.abort(outer?.reason);
  if (outer?.aborted) onOuter();
  else outer?.addEventListener("abort", onOuter, { once: true });
  try {
    return await untilAborted(run(controller.signal), controller.signal);
  } finally {
    clearTimeout(timer);
    outer?.removeEventListener("abort", onOuter);
  }
}
