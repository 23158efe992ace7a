import { DEFAULT_FRAME_TIMEOUT_MS, DEFAULT_MAX_DEPTH, DEFAULT_MAX_VALUES } from "./constants.js";
import { decodeJson, FrameDecoder } from "./frame.js";
import { checkJsonLimitsOption, type JsonLimits } from "./limits.js";
import { ProtocolViolationError } from "./violation.js";

export interface Timers {
  setTimeout: typeof setTimeout;
  clearTimeout: typeof clearTimeout;
}

export interface MessageReaderOptions {
  /** Largest frame body accepted, in bytes. Default 16 MiB. */
  maxFrameBytes?: number;
  /** Deepest nesting accepted, checked on the bytes before JSON.parse. Default 64. */
  maxDepth?: number;
  /** Most values accepted in one frame, checked on the bytes before JSON.parse. Default 100,000. */
  maxValues?: number;
  /** Once a frame has begun, the rest must arrive within this many ms. Default 30,000. */
  frameTimeoutMs?: number;
  /**
   * Called once per frame with its parsed JSON. It may throw a ProtocolViolationError (for instance
   * from parseHostMessage): the reader then reports it through onViolation like its own violations.
   * frameBytes is the size of the frame's body, for callers that account for memory.
   */
  onMessage: (value: unknown, frameBytes: number) => void;
  /** Called at most once; the reader has stopped reading. The owner destroys the stream. */
  onViolation: (error: ProtocolViolationError) => void;
  timers?: Timers;
}

type Timer = ReturnType<typeof setTimeout>;

/**
 * Reads length-prefixed JSON messages from a stream and enforces the receiver's limits: frame size
 * (as the header arrives), depth and values (on the body's bytes, before JSON.parse), and the frame
 * timeout: once a frame's first byte arrives, the whole frame must follow within frameTimeoutMs.
 * Time spent while the owner has paused reading (pause()) does not count against the peer.
 */
export class MessageReader {
  readonly #stream: NodeJS.ReadableStream;
  readonly #decoder: FrameDecoder;
  readonly #frameTimeoutMs: number;
  readonly #limits: JsonLimits;
  readonly #onMessage: (value: unknown, frameBytes: number) => void;
  readonly #onViolation: (error: ProtocolViolationError) => void;
  readonly #timers: Timers;
  #timer: Timer | undefined;
  /** Bytes pushed so far (for judging a deadline after I/O). */
  #received = 0;
  #stopped = false;
  #paused = false;
  /** Frames already received when the owner paused: delivered, in order, on resume. */
  #backlog: Buffer[] = [];

  constructor(stream: NodeJS.ReadableStream, options: MessageReaderOptions) {
    const frameTimeoutMs = options.frameTimeoutMs ?? DEFAULT_FRAME_TIMEOUT_MS;
    if (!Number.isSafeInteger(frameTimeoutMs) || frameTimeoutMs < 1) {
      throw new RangeError(`frameTimeoutMs must be a positive integer, got ${String(frameTimeoutMs)}`);
    }
    this.#stream = stream;
    this.#decoder = new FrameDecoder(
      options.maxFrameBytes === undefined ? {} : { maxFrameBytes: options.maxFrameBytes },
    );
    this.#frameTimeoutMs = frameTimeoutMs;
    this.#limits = checkJsonLimitsOption({
      maxDepth: options.maxDepth ?? DEFAULT_MAX_DEPTH,
      maxValues: options.maxValues ?? DEFAULT_MAX_VALUES,
    });
    this.#onMessage = options.onMessage;
    this.#onViolation = options.onViolation;
    this.#timers = options.timers ?? { setTimeout, clearTimeout };
    stream.on("data", this.#onData);
    stream.on("close", this.#onClose);
    stream.on("end", this.#onClose);
  }

  /** Bytes of an incomplete frame currently held. */
  get bufferedBytes(): number {
    return this.#decoder.bufferedBytes;
  }

  /** Stops reading from the stream (backpressure) and suspends the frame timeout. */
  pause(): void {
    if (this.#stopped || this.#paused) return;
    this.#paused = true;
    this.#stream.pause();
    this.#clearTimer();
  }

  /** Resumes reading; an incomplete frame gets a fresh frame timeout. */
  resume(): void {
    if (this.#stopped || !this.#paused) return;
    this.#paused = false;
    if (this.#backlog.length > 0) {
      const backlog = this.#backlog;
      this.#backlog = [];
      // Delivering may pause again: what is left goes back to the backlog.
      if (!this.#deliver(backlog)) return;
    }
    this.#stream.resume();
    if (this.#decoder.midFrame) this.#armTimer();
  }

  /** Removes the reader's listeners and timer. Idempotent. */
  dispose(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#backlog = [];
    this.#clearTimer();
    this.#stream.removeListener("data", this.#onData);
    this.#stream.removeListener("close", this.#onClose);
    this.#stream.removeListener("end", this.#onClose);
  }

  readonly #onData = (chunk: Buffer | string): void => {
    if (this.#stopped) return;
    this.#received += chunk.length;
    let bodies: Buffer[];
    try {
      bodies = this.#decoder.push(typeof chunk === "string" ? Buffer.from(chunk, "utf8") : chunk);
    } catch (error) {
      this.#violate(error);
      return;
    }
    if (!this.#deliver(bodies)) return;
    if (!this.#decoder.midFrame) {
      this.#clearTimer();
    } else if (bodies.length > 0 || this.#timer === undefined) {
      // A new frame began in this chunk: its deadline starts now.
      this.#armTimer();
    }
  };

  /**
   * Hands bodies to onMessage in order. Returns false when it stopped early: the reader was
   * stopped, or the owner paused it (the undelivered bodies then wait in the backlog).
   */
  #deliver(bodies: Buffer[]): boolean {
    for (let i = 0; i < bodies.length; i++) {
      if (this.#paused) {
        for (let j = i; j < bodies.length; j++) this.#backlog.push(bodies[j]!);
        return false;
      }
      const body = bodies[i]!;
      try {
        this.#onMessage(decodeJson(body, this.#limits), body.length);
      } catch (error) {
        this.#violate(error);
        return false;
      }
      // onMessage may have disposed the reader (its owner closed the connection).
      if (this.#stopped) return false;
    }
    return !this.#paused;
  }

  readonly #onClose = (): void => {
    this.#clearTimer();
  };

  #violate(error: unknown): void {
    if (!(error instanceof ProtocolViolationError)) throw error;
    this.dispose();
    this.#onViolation(error);
  }

  #armTimer(): void {
    this.#clearTimer();
    const timer = this.#timers.setTimeout(this.#onTimeout, this.#frameTimeoutMs);
    timer.unref?.();
    this.#timer = timer;
  }

  #clearTimer(): void {
    if (this.#timer === undefined) return;
    this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /**
   * The frame's deadline passed. It is judged only after the event loop's next I/O phase (timers
   * run before I/O in each turn), so a loop that was busy past the deadline first reads what the
   * socket holds: a frame that had arrived completes instead of failing. While bytes keep arriving
   * the judgement waits one more turn; a turn without progress decides.
   */
  readonly #onTimeout = (): void => {
    this.#timer = undefined;
    if (this.#stopped) return;
    this.#judgeAfterIo(this.#received);
  };

  #judgeAfterIo(receivedAtDeadline: number): void {
    setImmediate(() => {
      // Done, or the frame completed (and maybe a new one began, with its own timer).
      if (this.#stopped || this.#timer !== undefined || !this.#decoder.midFrame || this.#paused) return;
      if (this.#received > receivedAtDeadline) {
        this.#judgeAfterIo(this.#received);
        return;
      }
      this.#expire();
    });
  }

  #expire(): void {
    this.#violate(
      new ProtocolViolationError(
        "frame-timeout",
        `frame incomplete after ${this.#frameTimeoutMs} ms (${this.#decoder.bufferedBytes} bytes received)`,
      ),
    );
  }
}
