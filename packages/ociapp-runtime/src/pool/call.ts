import { RequestTimeoutError } from "../errors.js";
import { type ArtifactRef, type CallSettledMessage, channels } from "../observability/channels.js";

/** Whoever holds a call that is not yet answered: its pool's queue, or the instance it was sent to. */
export interface CallHolder {
  /** The caller gave up (timeout or abort): drop it from the queue, or send a cancel frame. */
  abandon(call: Call): void;
  /**
   * While a frame from the container is only partly received: the bytes read from its connection so
   * far (any number that grows as bytes arrive); else -1. A deadline is not judged while it grows.
   */
  receiving?(): number;
}

/** Before a pool took it (digest lookup, image load). */
export const PENDING = 0;
/** Waiting in its pool's FIFO queue. */
export const QUEUED = 1;
/** Sent to a container; its slot is held until the container's final frame. */
export const RUNNING = 2;

/**
 * One execute() call. It settles exactly once; a call that settles early (timeout, abort) stays
 * with its holder until the container answers, so its slot is not reused under the container.
 * It is its own abort listener and timer argument, so a call costs no closures beyond its promise.
 */
export class Call {
  stage = PENDING;
  settled = false;
  /** warm()'s prime request (pool/prime.ts): not a caller's call, so no event or count reports it. */
  prime = false;
  /** performance.now() at execute(): latency is measured from here, queue time included. */
  readonly createdAt = performance.now();
  /** performance.now() when its request was written to a container. */
  sentAt: number | undefined;
  /** Its artifact, once a pool took it (for the lifecycle events). */
  artifact: ArtifactRef | undefined;
  holder: CallHolder | undefined;
  /** Links in its pool's queue. */
  prev: Call | undefined;
  next: Call | undefined;
  /** Links in its runtime's deadline list, and when it times out there (performance.now()). */
  deadlinePrev: Call | undefined;
  deadlineNext: Call | undefined;
  deadline = 0;
  /** The holder's receiving() when the deadline was last judged (a frame was arriving). */
  private judgedAt = -1;
  private deadlines: CallDeadlines | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;

  /**
   * `deadlines` serves calls with the runtime's requestTimeout (their deadlines only increase, so
   * one list and one timer cover them all); a call with its own timeout gets its own timer.
   */
  constructor(
    readonly id: string,
    readonly frame: Buffer,
    private readonly resolveCall: (value: unknown) => void,
    private readonly rejectCall: (reason: unknown) => void,
    private readonly signal: AbortSignal | undefined,
    private readonly timeoutMs: number,
    deadlines?: CallDeadlines,
  ) {
    if (deadlines) {
      this.deadlines = deadlines;
      deadlines.add(this, this.createdAt + timeoutMs);
    } else {
      this.timer = setTimeout(onCallTimeout, timeoutMs, this);
      this.timer.unref();
    }
    signal?.addEventListener("abort", this);
  }

  /** Its deadline list let go of it: settling it no longer needs to remove it there. */
  leaveDeadlines(): void {
    this.deadlines = undefined;
  }

  /** The call's own timer fired: it no longer needs clearing. */
  detachTimer(): void {
    this.timer = undefined;
  }

  succeed(value: unknown): void {
    if (this.settled) return;
    this.finish(OK);
    this.resolveCall(value);
  }

  fail(error: unknown): void {
    if (this.settled) return;
    this.finish({ ok: false, error });
    this.rejectCall(error);
  }

  /** The caller gave up: settle now, and let the holder drop the call or cancel it remotely. */
  giveUp(error: unknown): void {
    if (this.settled) return;
    this.fail(error);
    this.holder?.abandon(this);
  }

  /** AbortSignal listener (EventListenerObject). */
  handleEvent(): void {
    this.giveUp(this.signal?.reason);
  }

  /**
   * The deadline has passed; the caller is told only once the answer has not arrived in the meantime.
   * Called after the event loop's I/O phase (see judgeAfterIo), so an answer already in the socket's
   * buffer when a busy loop let the timer fire late has been read and has settled the call. Returns
   * false when a frame from the container is still arriving: judge again after the next I/O phase.
   */
  judge(): boolean {
    if (this.settled) return true;
    const receiving = this.holder?.receiving?.() ?? -1;
    if (receiving >= 0 && receiving !== this.judgedAt) {
      this.judgedAt = receiving;
      return false;
    }
    this.giveUp(new RequestTimeoutError(this.timeoutMs));
    return true;
  }

  /** `outcome` is for the callSettled event. */
  private finish(outcome: { ok: true } | { ok: false; error: unknown }): void {
    this.settled = true;
    if (channels.callSettled.hasSubscribers && !this.prime) publishSettled(this, outcome);
    if (this.deadlines !== undefined) {
      this.deadlines.remove(this);
      this.deadlines = undefined;
    } else if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.signal?.removeEventListener("abort", this);
  }
}

const OK = { ok: true } as const;

function publishSettled(call: Call, outcome: { ok: true } | { ok: false; error: unknown }): void {
  const error = outcome.ok ? undefined : outcome.error;
  const code = (error as { code?: unknown } | undefined)?.code;
  const message: CallSettledMessage = {
    id: call.id,
    artifact: call.artifact,
    outcome: outcome.ok ? "ok" : typeof code === "string" ? code : "aborted",
    error,
    createdAt: call.createdAt,
    sentAt: call.sentAt,
    settledAt: performance.now(),
  };
  channels.callSettled.publish(message);
}

function onCallTimeout(call: Call): void {
  call.detachTimer();
  judgeAfterIo([call]);
}

/**
 * Judges overdue calls in the check phase (setImmediate), after the poll phase has read what the
 * sockets hold: timers run before I/O in each turn of the event loop, so a loop that was busy past a
 * deadline would otherwise fail a call whose answer had already arrived. Calls whose answer frame is
 * still arriving are judged again a turn later, for as long as bytes keep coming (a frame stalled
 * past frameTimeout ends the connection, so this is bounded).
 */
export function judgeAfterIo(calls: Call[]): void {
  setImmediate(judgeNow, calls);
}

function judgeNow(calls: Call[]): void {
  const later: Call[] = [];
  for (const call of calls) if (!call.judge()) later.push(call);
  if (later.length > 0) judgeAfterIo(later);
}

/**
 * The unsettled calls of one timeout length, in deadline order (they are added as they are made, so
 * their deadlines only increase): add and remove are O(1) linked-list operations, and one unref'd
 * timer, armed for the earliest deadline, times them all out. It holds only unsettled calls, so it
 * does not grow with history. The timer may fire for a call that has settled since; it then re-arms
 * for the new earliest deadline, so it fires about once per timeout length, not once per call.
 */
export class CallDeadlines {
  private head: Call | undefined;
  private tail: Call | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** When the armed timer fires. */
  private timerAt = Number.POSITIVE_INFINITY;
  size = 0;

  /** `deadline` is performance.now() based; calls are added in increasing deadline order. */
  add(call: Call, deadline: number): void {
    call.deadline = deadline;
    call.deadlinePrev = this.tail;
    call.deadlineNext = undefined;
    if (this.tail) this.tail.deadlineNext = call;
    else this.head = call;
    this.tail = call;
    this.size++;
    if (this.timer === undefined) this.arm();
  }

  remove(call: Call): void {
    if (call.deadlinePrev) call.deadlinePrev.deadlineNext = call.deadlineNext;
    else if (this.head === call) this.head = call.deadlineNext;
    else return;
    if (call.deadlineNext) call.deadlineNext.deadlinePrev = call.deadlinePrev;
    else this.tail = call.deadlinePrev;
    call.deadlinePrev = undefined;
    call.deadlineNext = undefined;
    this.size--;
  }

  /** Timer callback: overdue calls leave the list and are judged after the I/O phase. */
  expire(): void {
    this.timer = undefined;
    this.timerAt = Number.POSITIVE_INFINITY;
    const now = performance.now();
    const overdue: Call[] = [];
    for (let call = this.head; call !== undefined && call.deadline <= now; call = this.head) {
      this.remove(call);
      call.leaveDeadlines();
      overdue.push(call);
    }
    if (overdue.length > 0) judgeAfterIo(overdue);
    this.arm();
  }

  private arm(): void {
    const head = this.head;
    if (head === undefined || this.timerAt <= head.deadline) return;
    clearTimeout(this.timer);
    this.timerAt = head.deadline;
    // +1: timers round to whole milliseconds; firing a little late beats re-arming for the remainder.
    this.timer = setTimeout(expireDeadlines, Math.max(0, head.deadline - performance.now()) + 1, this);
    this.timer.unref();
  }
}

function expireDeadlines(deadlines: CallDeadlines): void {
  deadlines.expire();
}

/** FIFO of calls with O(1) removal from anywhere (a queued call that times out leaves at once). */
export class CallQueue {
  private head: Call | undefined;
  private tail: Call | undefined;
  length = 0;

  push(call: Call): void {
    call.prev = this.tail;
    call.next = undefined;
    if (this.tail) this.tail.next = call;
    else this.head = call;
    this.tail = call;
    this.length++;
  }

  shift(): Call | undefined {
    const call = this.head;
    if (call) this.remove(call);
    return call;
  }

  remove(call: Call): void {
    if (call.prev) call.prev.next = call.next;
    else if (this.head === call) this.head = call.next;
    else return;
    if (call.next) call.next.prev = call.prev;
    else this.tail = call.prev;
    call.prev = undefined;
    call.next = undefined;
    this.length--;
  }

  /** Empties the queue, returning its calls in order. */
  drain(): Call[] {
    const calls: Call[] = [];
    for (let call = this.shift(); call; call = this.shift()) calls.push(call);
    return calls;
  }
}
