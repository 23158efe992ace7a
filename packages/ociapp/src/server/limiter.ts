/** A place in the limiter's queue. */
export interface Waiter {
  readonly run: () => void;
  cancelled: boolean;
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

  /** Queues run() to be called, holding a slot, once one frees up. */
  enqueue(run: () => void): Waiter {
    const waiter: Waiter = { run, cancelled: false };
    this.#queue.push(waiter);
    this.#waiting++;
    return waiter;
  }

  cancel(waiter: Waiter): void {
    if (waiter.cancelled) return;
    waiter.cancelled = true;
    this.#waiting--;
  }

  /** Frees a slot and hands it to the next waiter, if any. */
  release(): void {
    this.#active--;
    while (this.#head < this.#queue.length) {
      const waiter = this.#queue[this.#head]!;
      this.#queue[this.#head] = undefined as never;
      this.#head++;
      this.#compact();
      if (waiter.cancelled) continue;
      waiter.cancelled = true;
      this.#waiting--;
      this.#active++;
      waiter.run();
      return;
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
