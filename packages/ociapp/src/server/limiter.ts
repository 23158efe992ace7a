/** A place in the limiter's queue: the limiter sets queued and calls run() holding a slot. */
export interface Waiter {
  queued: boolean;
  run(): void;
}

/**
 * Process-wide cap on executes in flight. Callers that find no free slot wait in FIFO order.
 * Cancelling a waiter is O(1): it is flagged and skipped when it reaches the front.
 */
export class ConcurrencyLimiter {
  readonly max: number;
  #active = 0;
  #queue: Waiter[] = [];
  #head = 0;
  #waiting = 0;
  #dispatching = false;

  constructor(max: number) {
    this.max = max;
  }

  get active(): number {
    return this.#active;
  }

  get waiting(): number {
    return this.#waiting;
  }

  /** Takes a slot if one is free. The caller must release() it. */
  tryAcquire(): boolean {
    if (this.#active >= this.max || this.#waiting > 0) return false;
    this.#active++;
    return true;
  }

  /** Queues waiter.run() to be called, holding a slot, once one frees up. */
  enqueue(waiter: Waiter): void {
    waiter.queued = true;
    this.#queue.push(waiter);
    this.#waiting++;
  }

  cancel(waiter: Waiter): void {
    if (!waiter.queued) return;
    waiter.queued = false;
    this.#waiting--;
  }

  /**
   * Frees a slot and hands free slots to the next waiters. A waiter's run() may finish at once and
   * release again: that inner release only frees its slot, and this loop hands it on, so a queue of
   * synchronous executes never recurses.
   */
  release(): void {
    this.#active--;
    if (this.#dispatching) return;
    this.#dispatching = true;
    try {
      while (this.#active < this.max && this.#head < this.#queue.length) {
        const waiter = this.#queue[this.#head]!;
        this.#queue[this.#head] = undefined as never;
        this.#head++;
        this.#compact();
        if (!waiter.queued) continue;
        waiter.queued = false;
        this.#waiting--;
        this.#active++;
        waiter.run();
      }
    } finally {
      this.#dispatching = false;
    }
  }

  #compact(): void {
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }
}
