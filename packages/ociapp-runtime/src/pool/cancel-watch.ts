import type { Call } from "./call.js";
import { DeadlineList } from "./deadline-list.js";

/**
 * Cancelled calls awaiting their final frame, each with a deadline (one timer for all of them). A
 * call still pending at its deadline is stuck: the app ignores its cancel. Real time, not the
 * runtime's injectable clock: it arms a real timer.
 */
export class CancelWatch {
  private readonly list = new DeadlineList<Call>();
  private timer: ReturnType<typeof setTimeout> | undefined;

  /**
   * @param graceMs how long a cancelled call's final frame may take
   * @param pending whether the call still holds its slot (no final frame yet)
   * @param onStuck called once per check that found a stuck call
   */
  constructor(
    private readonly graceMs: number,
    private readonly pending: (call: Call) => boolean,
    private readonly onStuck: (call: Call) => void,
  ) {}

  add(call: Call): void {
    this.list.push(call, performance.now() + this.graceMs);
    if (this.timer === undefined) this.arm();
  }

  clear(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.list.clear();
  }

  /** Timer callback. */
  check(): void {
    this.timer = undefined;
    const stuck = this.list.takeOverdue(performance.now(), this.pending);
    if (stuck !== undefined) this.onStuck(stuck);
    this.arm();
  }

  private arm(): void {
    const due = this.list.nextDue();
    if (due === undefined) return;
    this.timer = setTimeout(onCancelTimer, Math.max(0, due - performance.now()) + 1, this);
    this.timer.unref();
  }
}

function onCancelTimer(watch: CancelWatch): void {
  watch.check();
}
