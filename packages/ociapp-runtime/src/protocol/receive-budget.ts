/**
 * A runtime-wide bound on the bytes of partly received frames held across all container
 * connections: one container may send a frame up to maxFrameBytes, but N containers sending N such
 * frames at once must not cost N × maxFrameBytes. While the total is within `maxBytes` every
 * connection reads. Past it, one connection (the first to go past) keeps reading until its frame is
 * complete; the others pause (their frame timeouts suspended, see MessageReader.pause) until the
 * total is back within the budget. A connection learns it must pause from a read it has already
 * taken, so each paused one may hold one read more: the bytes held never pass
 * `maxBytes + maxFrameBytes + (connections - 1) × one read` (libuv reads a stream at most 64 KiB at
 * a time: its suggested size for stream reads). The connection that may read always can finish its
 * frame (or break its frame timeout and be closed), so the budget is always released.
 */
export class ReceiveBudget {
  /** Bytes of partial frames held, over all connections. */
  held = 0;
  /** The most `held` has been. */
  peak = 0;
  private readonly holdings = new Map<object, number>();
  private token: object | undefined;
  private readonly waiting = new Map<object, () => void>();

  constructor(readonly maxBytes: number) {}

  /** Connections paused for the budget. */
  get paused(): number {
    return this.waiting.size;
  }

  /**
   * Records that `owner` now holds `bytes` of a partial frame. Returns true when it may keep reading;
   * false when it must pause, and `resume` is then called (once) when it may read again.
   */
  update(owner: object, bytes: number, resume: () => void): boolean {
    const before = this.holdings.get(owner) ?? 0;
    if (bytes === 0) this.holdings.delete(owner);
    else this.holdings.set(owner, bytes);
    this.held += bytes - before;
    if (this.held > this.peak) this.peak = this.held;
    if (this.token === owner && bytes === 0) this.token = undefined;
    // Within the budget, or holding nothing (between frames): nothing to bound.
    if (this.held <= this.maxBytes || bytes === 0) {
      this.wake();
      return true;
    }
    if (this.token === undefined) {
      if (this.waiting.size > 0) this.wake();
      else this.token = owner;
    }
    if (this.token === owner) return true;
    this.waiting.set(owner, resume);
    return false;
  }

  /** The connection ended: what it held is released. */
  release(owner: object): void {
    this.waiting.delete(owner);
    const before = this.holdings.get(owner) ?? 0;
    this.holdings.delete(owner);
    this.held -= before;
    if (this.token === owner) this.token = undefined;
    this.wake();
  }

  /**
   * Within the budget, every paused connection resumes. Past it with no connection reading, the one
   * that waited longest gets the turn: paused connections hold bytes too, and their frame timeouts
   * are suspended, so someone must always be reading.
   */
  private wake(): void {
    if (this.waiting.size === 0) return;
    if (this.held <= this.maxBytes) {
      const resumes = [...this.waiting.values()];
      this.waiting.clear();
      for (const resume of resumes) resume();
      return;
    }
    if (this.token !== undefined) return;
    const [owner, resume] = this.waiting.entries().next().value as [object, () => void];
    this.waiting.delete(owner);
    this.token = owner;
    resume();
  }
}
