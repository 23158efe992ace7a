import type { Instance } from "./instance.js";

/** After a standby's create failed, how long before the next one is tried (ms). */
const RETRY_BACKOFF_MS = 5_000;

/** What the standby needs from its pool. */
export interface StandbyHost {
  /** A new instance of the pool's artifact, not counted by the pool until it is taken. */
  newInstance(): Instance;
  /** Resolves once the engine holds the artifact's image. */
  image(): Promise<void>;
  /** The runtime's clock (ms). */
  now(): number;
}

/**
 * The Runtime's `standby` option for one artifact: containers created ahead of demand and not
 * started, so that a call arriving when the artifact has no container pays the engine's start and the
 * handshake only (README: Performance, scale from zero). A created container runs nothing: it holds
 * no memory or CPU, only its writable layer on the engine's disk, and a host that dies leaves nothing
 * running (the next Runtime's orphan sweep removes it with the rest). The pool counts these toward
 * maxInstances, takes one instead of creating a container, refills when there is room, and clears
 * them on close() and once the artifact is idle.
 */
export class Standby {
  private readonly held = new Set<Instance>();
  private lastFailure = Number.NEGATIVE_INFINITY;
  private closed = false;

  /** `size`: containers to keep (the resolved `standby` option, 0 or 1). */
  constructor(
    private readonly size: number,
    private readonly host: StandbyHost,
  ) {}

  /** Containers held: created, or being created or removed. */
  get count(): number {
    return this.held.size;
  }

  /**
   * A standby container for the pool to start (its create may still be under way: start() waits for
   * it), or undefined when there is none. The caller counts it from now on.
   */
  take(): Instance | undefined {
    for (const instance of this.held) {
      if (instance.state !== "starting") continue;
      this.held.delete(instance);
      return instance;
    }
    return undefined;
  }

  /** Creates standby containers up to `size`, at most `room` (maxInstances left), unless one just failed. */
  fill(room: number): void {
    if (this.closed || this.host.now() - this.lastFailure < RETRY_BACKOFF_MS) return;
    for (let wanted = Math.min(this.size - this.held.size, room); wanted > 0; wanted--) {
      const instance = this.host.newInstance();
      this.held.add(instance);
      instance.prepare(this.host.image()).catch(() => {
        // Not taken yet: it goes. (A taken one fails its start with the same error instead.)
        if (!this.held.has(instance)) return;
        this.lastFailure = this.host.now();
        void this.remove(instance);
      });
    }
  }

  /** Removes every standby container (idle artifact); resolves once they are gone. */
  async clear(): Promise<void> {
    await Promise.all([...this.held].map((instance) => this.remove(instance)));
  }

  /** close(): clears, and creates no more. */
  close(): Promise<void> {
    this.closed = true;
    return this.clear();
  }

  /** Counted until removed: the pool (and so the Runtime) does not forget a container in flight. */
  private async remove(instance: Instance): Promise<void> {
    await instance.discard();
    this.held.delete(instance);
  }
}
