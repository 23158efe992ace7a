import { isUtf8 } from "node:buffer";
import { DEFAULT_MAX_FRAME_BYTES, FRAME_HEADER_BYTES, MAX_DECLARABLE_FRAME_BYTES } from "./constants.js";
import { checkJsonLimits, type JsonLimits } from "./limits.js";
import type { Limits } from "./messages.js";
import { ProtocolViolationError } from "./violation.js";

export function checkMaxFrameBytes(maxFrameBytes: number, option = "maxFrameBytes"): number {
  if (
    !Number.isSafeInteger(maxFrameBytes) ||
    maxFrameBytes < 1 ||
    maxFrameBytes > MAX_DECLARABLE_FRAME_BYTES
  ) {
    throw new RangeError(
      `${option} must be an integer from 1 to ${MAX_DECLARABLE_FRAME_BYTES}, got ${String(maxFrameBytes)}`,
    );
  }
  return maxFrameBytes;
}

const SMALL_JSON_CHARS = 1024;

function tooLarge(bytes: number, maxFrameBytes: number): ProtocolViolationError {
  return new ProtocolViolationError(
    "frame-too-large",
    `frame of ${bytes} bytes exceeds the limit of ${maxFrameBytes} bytes (maxFrameBytes)`,
  );
}

/**
 * Serialises one message into a single buffer: 4-byte big-endian length, then UTF-8 JSON.
 * The header and body share one allocation so that a write is one syscall.
 */
export function encodeFrame(message: object, maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES): Buffer {
  const json: string | undefined = JSON.stringify(message);
  if (typeof json !== "string") throw new TypeError("message is not JSON-serialisable");
  return encodeJsonFrame(json, maxFrameBytes);
}

/**
 * encodeFrame within a peer's limits (from its hello): throws ProtocolViolationError "frame-too-large",
 * "too-deep" or "too-many-values", its message naming the limit, when the message would break them.
 * What a sender calls before sending, so that the peer never has to close the connection over it.
 */
export function encodeFrameWithin(message: object, limits: Limits): Buffer {
  const json: string | undefined = JSON.stringify(message);
  if (typeof json !== "string") throw new TypeError("message is not JSON-serialisable");
  checkJsonLimits(json, limits);
  return encodeJsonFrame(json, limits.maxFrameBytes);
}

/** encodeFrame for a message already serialised. */
export function encodeJsonFrame(json: string, maxFrameBytes: number): Buffer {
  if (json.length <= SMALL_JSON_CHARS) {
    // Small frames come from Buffer's shared pool: over-allocate (UTF-8 needs at most 3 bytes per
    // UTF-16 unit) rather than scanning the string twice.
    const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + json.length * 3);
    const written = frame.write(json, FRAME_HEADER_BYTES, "utf8");
    if (written > maxFrameBytes) throw tooLarge(written, maxFrameBytes);
    frame.writeUInt32BE(written, 0);
    return frame.subarray(0, FRAME_HEADER_BYTES + written);
  }
  const bodyBytes = Buffer.byteLength(json, "utf8");
  if (bodyBytes > maxFrameBytes) throw tooLarge(bodyBytes, maxFrameBytes);
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + bodyBytes);
  frame.writeUInt32BE(bodyBytes, 0);
  frame.write(json, FRAME_HEADER_BYTES, "utf8");
  return frame;
}

/**
 * Incremental frame decoder. It keeps the received chunks as they are and assembles a body only once
 * all of its bytes have arrived, so memory never exceeds what the peer actually sent (at most
 * maxFrameBytes + 3 bytes are retained between pushes). A declared length is validated the moment the
 * 4 header bytes are known.
 *
 * Returned bodies may share memory with the pushed chunks (zero-copy when a frame lies within one
 * chunk): callers must not reuse a chunk's memory after pushing it.
 *
 * After a violation the decoder is poisoned: every further push throws the same error.
 */
export class FrameDecoder {
  readonly #maxFrameBytes: number;
  readonly #chunks: Buffer[] = [];
  /** Read offset into #chunks[0]. */
  #offset = 0;
  #buffered = 0;
  /** Declared body length of the frame in progress, or -1 while its header is incomplete. */
  #bodyBytes = -1;
  #failure: ProtocolViolationError | undefined;

  constructor(options: { maxFrameBytes?: number } = {}) {
    this.#maxFrameBytes = checkMaxFrameBytes(options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES);
  }

  get maxFrameBytes(): number {
    return this.#maxFrameBytes;
  }

  /** true while a frame has begun (at least one byte received) but is not complete. */
  get midFrame(): boolean {
    return this.#buffered > 0 || this.#bodyBytes >= 0;
  }

  /** Bytes received and not yet returned as part of a body (header bytes already parsed excluded). */
  get bufferedBytes(): number {
    return this.#buffered;
  }

  push(chunk: Uint8Array): Buffer[] {
    if (this.#failure) throw this.#failure;
    const frames: Buffer[] = [];
    if (chunk.byteLength === 0) return frames;
    const buffer = Buffer.isBuffer(chunk)
      ? chunk
      : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    this.#chunks.push(buffer);
    this.#buffered += buffer.length;
    for (;;) {
      if (this.#bodyBytes < 0) {
        if (this.#buffered < FRAME_HEADER_BYTES) break;
        const declared = this.#readHeader();
        if (declared === 0) this.#fail(new ProtocolViolationError("empty-frame", "frame declares 0 bytes"));
        if (declared > this.#maxFrameBytes) this.#fail(tooLarge(declared, this.#maxFrameBytes));
        this.#bodyBytes = declared;
      }
      if (this.#buffered < this.#bodyBytes) break;
      frames.push(this.#take(this.#bodyBytes));
      this.#bodyBytes = -1;
    }
    return frames;
  }

  #fail(error: ProtocolViolationError): never {
    this.#failure = error;
    this.#chunks.length = 0;
    this.#buffered = 0;
    this.#offset = 0;
    throw error;
  }

  #readHeader(): number {
    const first = this.#chunks[0]!;
    if (first.length - this.#offset >= FRAME_HEADER_BYTES) {
      const value = first.readUInt32BE(this.#offset);
      this.#consume(FRAME_HEADER_BYTES);
      return value;
    }
    // The header straddles chunks: gather its 4 bytes one by one.
    let value = 0;
    for (let i = 0; i < FRAME_HEADER_BYTES; i++) {
      const head = this.#chunks[0]!;
      value = value * 256 + head[this.#offset]!;
      this.#consume(1);
    }
    return value;
  }

  /** Removes n bytes from the front; n <= #buffered. */
  #consume(n: number): void {
    this.#buffered -= n;
    let remaining = n;
    while (remaining > 0) {
      const head = this.#chunks[0]!;
      const available = head.length - this.#offset;
      if (available > remaining) {
        this.#offset += remaining;
        return;
      }
      remaining -= available;
      this.#chunks.shift();
      this.#offset = 0;
    }
  }

  /** Returns the next n bytes (n <= #buffered) as one buffer, copying only when they span chunks. */
  #take(n: number): Buffer {
    const head = this.#chunks[0]!;
    if (head.length - this.#offset >= n) {
      const body = head.subarray(this.#offset, this.#offset + n);
      this.#consume(n);
      return body;
    }
    // Every byte of this body has been received, so this allocation is bounded by actual input.
    const body = Buffer.allocUnsafe(n);
    let written = 0;
    let index = 0;
    let offset = this.#offset;
    while (written < n) {
      const chunk = this.#chunks[index]!;
      const count = Math.min(chunk.length - offset, n - written);
      chunk.copy(body, written, offset, offset + count);
      written += count;
      if (offset + count === chunk.length) {
        index++;
        offset = 0;
      } else {
        offset += count;
      }
    }
    this.#chunks.splice(0, index);
    this.#offset = offset;
    this.#buffered -= n;
    return body;
  }
}

/**
 * Limits on the bytes (when given: ProtocolViolationError "too-deep" | "too-many-values"), then
 * strict UTF-8, then JSON.parse ("invalid-utf8" | "invalid-json"). The limits are checked first so
 * that a hostile frame is rejected before its text is even decoded.
 *
 * Decoding replaces every invalid sequence with U+FFFD, so a body whose text has no U+FFFD was valid
 * UTF-8: the strict (second) scan runs only when one appears, which a well-behaved peer rarely sends.
 */
export function decodeJson(body: Uint8Array, limits?: JsonLimits): unknown {
  const buffer = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  if (limits !== undefined) checkJsonLimits(buffer, limits);
  const text = buffer.toString("utf8");
  if (text.includes("\uFFFD") && !isUtf8(buffer)) {
    throw new ProtocolViolationError("invalid-utf8", "frame body is not valid UTF-8");
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ProtocolViolationError("invalid-json", "frame body is not valid JSON", { cause: error });
  }
}
