/** Something waiting for its deadline in a Deadlines list (a client's call, an agent's body read). */
export interface DeadlineEntry {
  /** When it expires, performance.now() ms. */
  at: number;
  prev: DeadlineEntry | undefined;
  next: DeadlineEntry | undefined;
  list: DeadlineList | undefined;
  expire: () => void;
}

interface DeadlineList {
  ms: number;
  head: DeadlineEntry | undefined;
  tail: DeadlineEntry | undefined;
  timer: NodeJS.Timeout | undefined;
}

/** The largest delay Node's setTimeout honours, ms (a larger one fires after 1 ms). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Deadlines, one list and one timer per distinct duration instead of a timer each: entries given
 * the same duration expire in the order they were added, so each list only ever appends at its
 * tail and looks at its head. A Node timer per call (made, inserted and cleared) was about 3 us of
 * the client's CPU per call under the remote benchmark, and as much of the agent's for its body read. The list's timer is left
 * armed when its last entry goes (one call after another would otherwise make and clear a timer
 * each), unref'd while the list is empty so it keeps no process alive; when it fires early (for an
 * entry since cancelled) it is armed again for the head, so an entry expires at its own deadline.
 */
export class Deadlines {
  private readonly lists = new Map<number, DeadlineList>();

  /** Calls `expire` `ms` milliseconds from now unless the returned entry is cancelled first. */
  add(ms: number, expire: () => void): DeadlineEntry {
    let list = this.lists.get(ms);
    if (list === undefined) {
      list = { ms, head: undefined, tail: undefined, timer: undefined };
      this.lists.set(ms, list);
    }
    const entry: DeadlineEntry = {
      at: performance.now() + ms,
      prev: list.tail,
      next: undefined,
      list,
      expire,
    };
    if (list.tail) list.tail.next = entry;
    else {
      list.head = entry;
      if (list.timer === undefined) this.arm(list);
      else list.timer.ref();
    }
    list.tail = entry;
    return entry;
  }

  /** Takes the entry out (the call settled); a no-op for one that expired or was cancelled. */
  cancel(entry: DeadlineEntry): void {
    const list = entry.list;
    if (list === undefined) return;
    entry.list = undefined;
    if (entry.prev) entry.prev.next = entry.next;
    else list.head = entry.next;
    if (entry.next) entry.next.prev = entry.prev;
    else list.tail = entry.prev;
    entry.prev = entry.next = undefined;
    if (list.head === undefined) list.timer?.unref();
  }

  private arm(list: DeadlineList): void {
    const head = list.head as DeadlineEntry;
    // Node takes at most 2^31 - 1 ms and fires a larger delay after 1 ms (TimeoutOverflowWarning):
    // a longer deadline wakes once at the bound, finds its head not due, and is armed again.
    const delay = Math.min(MAX_TIMER_MS, Math.max(1, Math.ceil(head.at - performance.now())));
    list.timer = setTimeout(() => this.fire(list), delay);
  }

  private fire(list: DeadlineList): void {
    list.timer = undefined;
    const now = performance.now();
    try {
      while (list.head !== undefined && list.head.at <= now) {
        const entry = list.head;
        this.cancel(entry);
        entry.expire();
      }
    } finally {
      // Even after an expire() that threw: the entries left must still expire, and later ones too.
      if (list.timer === undefined) {
        if (list.head !== undefined) this.arm(list);
        else this.lists.delete(list.ms);
      }
      // else an expire() added to the emptied list and armed it
    }
  }
}
