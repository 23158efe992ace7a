/**
 * Items with deadlines that are pushed in increasing order (one fixed delay from "now"), so the
 * earliest is always at the front: push and expiry are O(1) amortised, and one timer serves all.
 */
export class DeadlineList<T> {
  private items: (T | undefined)[] = [];
  private deadlines: number[] = [];
  private head = 0;

  get size(): number {
    return this.items.length - this.head;
  }

  push(item: T, deadline: number): void {
    this.items.push(item);
    this.deadlines.push(deadline);
  }

  /** The earliest deadline still held. */
  nextDue(): number | undefined {
    return this.head < this.deadlines.length ? this.deadlines[this.head] : undefined;
  }

  /**
   * Drops every item whose deadline has passed; returns the first of them still `live` (so still
   * owed something), or undefined when every expired item had been dealt with already.
   */
  takeOverdue(now: number, live: (item: T) => boolean): T | undefined {
    let found: T | undefined;
    while (this.head < this.items.length && (this.deadlines[this.head] as number) <= now) {
      const item = this.items[this.head] as T;
      this.items[this.head] = undefined;
      this.head++;
      if (found === undefined && live(item)) found = item;
    }
    this.compact();
    return found;
  }

  clear(): void {
    this.items = [];
    this.deadlines = [];
    this.head = 0;
  }

  private compact(): void {
    if (this.head === this.items.length) this.clear();
    else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.deadlines = this.deadlines.slice(this.head);
      this.head = 0;
    }
  }
}
