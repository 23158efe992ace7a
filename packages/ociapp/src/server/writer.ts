import type { Socket } from "node:net";
import {
  DEFAULT_MAX_DEPTH,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_MAX_VALUES,
  FRAME_HEADER_BYTES,
  MAX_LOG_TEXT_CHARS,
} from "../protocol/constants.js";
import { encodeFrame, encodeJsonFrame } from "../protocol/frame.js";
import { checkJsonLimits } from "../protocol/limits.js";
import type { Limits, LogLevel, LogMessage, RemoteError } from "../protocol/messages.js";
import { ProtocolViolationError } from "../protocol/violation.js";
import { cutText } from "./invoke.js";

/** Up to this many bytes of frames are copied into one buffer per write. */
const MAX_COALESCED_BYTES = 256 * 1024;
/** Frames of up to this many JSON characters are encoded into the batch buffer. */
const BATCHED_JSON_CHARS = 1024;
/** Size of a batch buffer: room for at least 5 of the largest batched frames. */
const BATCH_BYTES = 16 * 1024;
const EMPTY_BATCH = Buffer.alloc(0);

/**
 * The sending half of a connection: every frame is kept within the host's limits, and the frames
 * finished in one tick leave in one write. Small frames are encoded straight into a 16 KiB batch
 * buffer (no buffer per frame, no copy at flush); whatever the tick produced goes to the socket as
 * one buffer, or as one writev past 256 KiB.
 */
export class FrameWriter {
  /**
   * The host's limits, from its hello: what every frame sent must stay within. Until the hello
   * arrives only our own hello is sent, which no limit applies to.
   */
  limits: Limits = {
    maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
    maxDepth: DEFAULT_MAX_DEPTH,
    maxValues: DEFAULT_MAX_VALUES,
  };
  readonly #socket: Socket;
  /** Log frames are dropped while this many bytes wait to be written. */
  readonly #maxOutboundBytes: number;
  /** Frames finished in this tick, written together by flush (one write per tick, not per frame). */
  #outbox: Buffer[] = [];
  #outboxBytes = 0;
  #flushScheduled = false;
  /** Small frames are encoded into this buffer; [#batchStart, #batchEnd) is not yet in the outbox. */
  #batch: Buffer = EMPTY_BATCH;
  #batchStart = 0;
  #batchEnd = 0;
  /** Log frames dropped since the last one that got out. */
  #droppedLogs = 0;

  constructor(socket: Socket, maxOutboundBytes: number) {
    this.#socket = socket;
    this.#maxOutboundBytes = maxOutboundBytes;
  }

  /** Bytes handed to the socket and not yet written, plus those waiting for this tick's flush. */
  get outboundBytes(): number {
    return this.#socket.writableLength + this.#outboxBytes + (this.#batchEnd - this.#batchStart);
  }

  /** A frame encoded beforehand (the hello), sent as it is. */
  sendFrame(frame: Buffer): void {
    this.#sealBatch();
    this.#outbox.push(frame);
    this.#outboxBytes += frame.length;
    this.#scheduleFlush();
  }

  /**
   * A request's final frame: value is the response payload when ok, else the RemoteError. An answer
   * that breaks the host's limits, or does not encode, is replaced by an error frame that says so.
   */
  sendAnswer(id: string, ok: boolean, value: unknown): void {
    const message = ok
      ? // JSON has no undefined: a schema whose output is undefined (z.void()) answers null.
        { type: "response", id, payload: value === undefined ? null : value }
      : { type: "error", id, error: value };
    let frame: Buffer;
    try {
      const json: string | undefined = JSON.stringify(message);
      if (typeof json !== "string") throw new TypeError("message is not JSON-serialisable");
      checkJsonLimits(json, this.limits);
      if (json.length <= BATCHED_JSON_CHARS && this.#appendToBatch(json)) return;
      frame = encodeJsonFrame(json, this.limits.maxFrameBytes);
    } catch (error) {
      frame = this.#encodeFallback(id, ok, value, error);
    }
    this.sendFrame(frame);
  }

  sendPong(id: string): void {
    const json = JSON.stringify({ type: "pong", id });
    if (this.#appendToBatch(json)) return;
    this.sendFrame(encodeJsonFrame(json, this.limits.maxFrameBytes));
  }

  /**
   * A console line as a log frame. Dropped (and counted, the count travelling on the next log frame
   * that gets out) while the outbound buffer is over its limit, so logs never hold back answers, or
   * when the frame would break the host's limits.
   */
  sendLog(level: LogLevel, id: string, text: string): void {
    if (this.outboundBytes >= this.#maxOutboundBytes) {
      this.#droppedLogs++;
      return;
    }
    const message: LogMessage = { type: "log", level, id, text: cutText(text, MAX_LOG_TEXT_CHARS) };
    if (this.#droppedLogs > 0) message.dropped = this.#droppedLogs;
    const json = JSON.stringify(message);
    try {
      checkJsonLimits(json, this.limits);
      if (!(json.length <= BATCHED_JSON_CHARS && this.#appendToBatch(json))) {
        this.sendFrame(encodeJsonFrame(json, this.limits.maxFrameBytes));
      }
    } catch {
      this.#droppedLogs++;
      return;
    }
    this.#droppedLogs = 0;
  }

  /** Writes what this tick produced now (before the socket is ended). */
  flush(): void {
    this.#flush();
  }

  /**
   * Encodes a small frame straight into the batch buffer, behind the frames already there. false
   * when it is over the host's maxFrameBytes (the caller's path reports it).
   */
  #appendToBatch(json: string): boolean {
    const room = FRAME_HEADER_BYTES + json.length * 3;
    if (this.#batch.length - this.#batchEnd < room) {
      this.#sealBatch();
      // The old buffer stays referenced by the writes it was handed to; frames go to a new one.
      this.#batch = Buffer.allocUnsafe(Math.max(BATCH_BYTES, room));
      this.#batchStart = 0;
      this.#batchEnd = 0;
    }
    const start = this.#batchEnd;
    const written = this.#batch.write(json, start + FRAME_HEADER_BYTES, "utf8");
    if (written > this.limits.maxFrameBytes) return false;
    this.#batch.writeUInt32BE(written, start);
    this.#batchEnd = start + FRAME_HEADER_BYTES + written;
    this.#scheduleFlush();
    return true;
  }

  /** Moves the batch's unsent frames to the outbox, as one buffer that shares the batch's memory. */
  #sealBatch(): void {
    if (this.#batchEnd === this.#batchStart) return;
    const frames = this.#batch.subarray(this.#batchStart, this.#batchEnd);
    this.#batchStart = this.#batchEnd;
    this.#outbox.push(frames);
    this.#outboxBytes += frames.length;
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    process.nextTick(this.#flush);
  }

  #encodeFallback(id: string, ok: boolean, value: unknown, cause: unknown): Buffer {
    const tooLarge = cause instanceof ProtocolViolationError;
    const failed = value as RemoteError;
    const error: RemoteError = ok
      ? tooLarge
        ? { type: "ResponseTooLarge", message: `the response breaks the host's limits: ${cause.message}` }
        : {
            type: "ResponseSerializationError",
            message: `response is not JSON-serialisable: ${cause instanceof Error ? cause.message : String(cause)}`,
          }
      : // The error itself did not fit or encode: its details (or its stack) are the likely culprit.
        { type: failed.type, message: failed.message };
    // Within the host's limits if at all possible: as it is, then with short texts (a host may take
    // frames as small as 1 KiB), and only then unchecked.
    const short: RemoteError = { type: cutText(error.type, 64), message: cutText(error.message, 200) };
    for (const candidate of [error, short]) {
      try {
        const json = JSON.stringify({ type: "error", id, error: candidate });
        checkJsonLimits(json, this.limits);
        return encodeJsonFrame(json, this.limits.maxFrameBytes);
      } catch {
        // try the next, smaller one
      }
    }
    return encodeFrame({
      type: "error",
      id,
      error: { type: short.type, message: "error too large to send" },
    });
  }

  /**
   * Writes the frames finished in this tick as one buffer. Copying small frames into one is cheaper
   * than a stream write per frame (cork and writev still pay the stream's bookkeeping per chunk).
   */
  readonly #flush = (): void => {
    this.#flushScheduled = false;
    this.#sealBatch();
    const outbox = this.#outbox;
    if (outbox.length === 0) return;
    const bytes = this.#outboxBytes;
    this.#outbox = [];
    this.#outboxBytes = 0;
    const socket = this.#socket;
    if (socket.destroyed || socket.writableEnded) return;
    if (outbox.length === 1) socket.write(outbox[0]!);
    else if (bytes <= MAX_COALESCED_BYTES) socket.write(Buffer.concat(outbox, bytes));
    else {
      // Large frames are not worth copying: one writev instead.
      socket.cork();
      for (const frame of outbox) socket.write(frame);
      socket.uncork();
    }
  };
}
