import { RequestTimeoutError } from "./errors.js";

/** Whoever holds a call that is not yet answered: its pool's queue, or the instance it was sent to. */
export interface CallHolder {
  /** The caller gave up (timeout or abort): drop it from the queue, or send a cancel frame. */
  abandon(call: Call): void;
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
  holder: CallHolder | undefined;
  /** Links in its pool's queue. */
  prev: Call | undefined;
  next: Call | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly id: string,
    readonly frame: Buffer,
    private readonly resolveCall: (value: unknown) => void,
    private readonly rejectCall: (reason: unknown) => void,
    private readonly signal: AbortSignal | undefined,
    private readonly timeoutMs: number,
  ) {
    this.timer = setTimeout(onCallTimeout, timeoutMs, this);
    this.timer.unref();
    signal?.addEventListener("abort", this);
  }

  succeed(value: unknown): void {
    if (this.settled) return;
    this.finish();
    this.resolveCall(value);
  }

  fail(error: unknown): void {
    if (this.settled) return;
    this.finish();
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

  onTimeout(): void {
    this.timer = undefined;
    this.giveUp(new RequestTimeoutError(this.timeoutMs));
  }

  private finish(): void {
    this.settled = true;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.signal?.removeEventListener("abort", this);
  }
}

function onCallTimeout(call: Call): void {
  call.onTimeout();
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
