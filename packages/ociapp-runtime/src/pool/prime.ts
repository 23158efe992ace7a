/**
 * warm()'s prime requests: each runs both sides' request path for real (this side: execute(), the
 * Call, the pool's dispatch to a container, the frame's write, reading and parsing the answer, settling; the
 * container's: reading, dispatch, a concurrency slot, the app's schemas on its prime sample, the
 * answer's encoding and write) but never the app's execute. V8 compiles a function at its first run
 * and moves it to its faster tiers as it keeps running (TurboFan after about a thousand runs on Node
 * 20), so the first call after warm() then costs about what a warm one does.
 */
export const PRIME_REQUESTS = 2_000;
/** Upper bound on the prime requests' time, in ms (warm() runs ahead of demand). */
export const PRIME_BUDGET_MS = 500;

/**
 * Sends up to PRIME_REQUESTS prime requests through `primeCall`, each once the last was answered,
 * for at most PRIME_BUDGET_MS. Rejects at the first that fails (no free slot, an app without
 * "prime-request", an error frame, the connection's end): the path is as primed as it got.
 */
export async function sendPrimeRequests(primeCall: () => Promise<unknown>): Promise<void> {
  const deadline = performance.now() + PRIME_BUDGET_MS;
  for (let i = 0; i < PRIME_REQUESTS && performance.now() < deadline; i++) await primeCall();
}
