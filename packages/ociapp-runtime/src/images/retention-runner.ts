import type { Engine } from "../engines/engine.js";
import { planRetention, type RetentionRules } from "./retention.js";

/** Bound on each engine call of a pass (list, mark, remove): a wedged engine cannot hold a pass. */
const ENGINE_CALL_TIMEOUT_MS = 30_000;

export interface ImageRetentionOptions extends RetentionRules {
  /** ms between passes at least (they run from the reaper's ticks). */
  interval: number;
}

export interface ImageRetentionStats {
  /** Passes completed. */
  passes: number;
  /** Images (or stale loading names) removed since the runtime began. */
  removed: number;
  /** The last pass's failure, if it failed (best effort: it never fails a call). */
  lastError: string | undefined;
}

/**
 * Runs image retention from the reaper at a bounded rate: at most one pass in flight, at most one
 * per `interval`. A pass first refreshes the shared last-used record of every artifact this runtime
 * used since the previous pass (so other runtimes keep its images), then, when idleTimeout or maxBytes
 * is set, lists the runtime-owned images and removes what planRetention picks. Engines without the
 * optional image methods get no retention.
 */
export class ImageRetention {
  readonly stats: ImageRetentionStats = { passes: 0, removed: 0, lastError: undefined };
  private running: Promise<void> | undefined;
  /**
   * The first pass comes one interval after construction: not while a new runtime starts its first
   * containers (a pass lists every image and container, load on the engine those starts share).
   */
  private lastStart: number;
  private readonly closed = new AbortController();

  constructor(
    private readonly engine: Engine,
    private readonly options: ImageRetentionOptions,
    /** Artifacts this runtime used since the previous call (it resets), and those it holds now. */
    private readonly usage: () => { used: Iterable<string>; active: ReadonlySet<string> },
    private readonly wallClock: () => number = Date.now,
  ) {
    this.lastStart = wallClock();
  }

  /** Called on every reaper tick; starts a pass when one is due. */
  tick(): void {
    const now = this.wallClock();
    if (this.running || this.closed.signal.aborted || now - this.lastStart < this.options.interval) return;
    this.lastStart = now;
    this.running = this.pass()
      .then(
        () => {
          this.stats.lastError = undefined;
        },
        (error: unknown) => {
          this.stats.lastError = error instanceof Error ? error.message : String(error);
        },
      )
      .finally(() => {
        this.stats.passes++;
        this.running = undefined;
      });
  }

  /** Runs a pass now (after the one in flight, if any) and resolves when it is done. */
  async runNow(): Promise<ImageRetentionStats> {
    await this.running;
    this.lastStart = Number.NEGATIVE_INFINITY;
    this.tick();
    await this.running;
    return { ...this.stats };
  }

  /** Ends a pass in flight (its engine requests are aborted) and starts no more; resolves once it ended. */
  async close(): Promise<void> {
    this.closed.abort();
    await this.running;
  }

  private bound(): AbortSignal {
    return AbortSignal.any([this.closed.signal, AbortSignal.timeout(ENGINE_CALL_TIMEOUT_MS)]);
  }

  private async pass(): Promise<void> {
    const { engine } = this;
    const { used, active } = this.usage();
    if (engine.markImageUsed) {
      for (const digest of used) await engine.markImageUsed(digest, this.bound());
    }
    const { idleTimeout, maxBytes } = this.options;
    if ((idleTimeout === 0 && maxBytes === 0) || !engine.listImages || !engine.removeImageNames) return;
    const images = await engine.listImages(this.bound());
    const removals = planRetention({ images, now: this.wallClock(), active, idleTimeout, maxBytes });
    for (const removal of removals) {
      if (this.closed.signal.aborted) return;
      if (await engine.removeImageNames(removal.names, this.bound())) this.stats.removed++;
    }
  }
}
