import { getEventListeners } from "node:events";

/**
 * AbortControllers for the agent's calls, reused. Node 20 builds every AbortSignal by swapping an
 * EventTarget's prototype, which leaves a slow object: making one and listening on it was about
 * 6 us of the agent's CPU per call (its profile under the remote benchmark). A call that settled
 * without an abort leaves a controller that is not aborted and, once the executor has removed its
 * listener (the Runtime does when the call settles), no different from a new one; only such
 * controllers are taken back. The executor must not keep using a call's signal after the call has
 * settled (Executor's contract: the signal is that call's).
 */
export class CallAborts {
  private readonly free: AbortController[] = [];

  /** `max`: controllers kept for reuse at most (one per call that may run at once is plenty). */
  constructor(private readonly max = 256) {}

  /** A controller whose signal is not aborted and has no listener. */
  take(): AbortController {
    return this.free.pop() ?? new AbortController();
  }

  /** Gives back the controller of a call that has settled: kept only if unaborted and unheard. */
  give(controller: AbortController): void {
    const { signal } = controller;
    if (signal.aborted || this.free.length >= this.max) return;
    if (getEventListeners(signal, "abort").length > 0) return;
    this.free.push(controller);
  }
}
