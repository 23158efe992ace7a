import { ProtocolViolationError } from "./violation.js";

/**
 * Bounds on the shape of one frame's JSON, checked on its bytes before JSON.parse so that a hostile
 * frame costs one scan, never a parse (V8 would build every nested array of a 16 MiB `[[[[...` frame).
 */
export interface JsonLimits {
  /** Deepest nesting of arrays/objects; the top-level object is depth 1. */
  readonly maxDepth: number;
  /** Values in the frame: the top-level value, every array element and every object member's value. */
  readonly maxValues: number;
}

/** Byte-level JSON structure; string contents are skipped whole. */
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const COMMA = 0x2c;
const SPACE = 0x20;
const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;

const WITHIN = 0;
const TOO_DEEP = 1;
const TOO_MANY_VALUES = 2;
type Outcome = typeof WITHIN | typeof TOO_DEEP | typeof TOO_MANY_VALUES;

/**
 * false when a valid JSON text of this many bytes (or UTF-16 code units) cannot break the limits, so
 * the scan can be skipped. Nesting d levels takes d openers and d closers: 2d bytes. Each value has
 * a byte of its own (a scalar's first byte, a container's closer) and each value but the top-level
 * one is announced by a byte of its own (`[` for an array's first element, `,`, `:`): v values take
 * at least 2v - 1 bytes. An invalid text that slips through is rejected by JSON.parse anyway.
 */
export function mayBreakJsonLimits(length: number, limits: JsonLimits): boolean {
  return length >= 2 * (limits.maxDepth + 1) || length >= 2 * limits.maxValues + 1;
}

/**
 * Throws ProtocolViolationError "too-deep" or "too-many-values" when the JSON in body (UTF-8 bytes, or
 * an already-encoded string on the send side) breaks limits; returns otherwise. One pass, no
 * allocation; stops at the first byte past a limit. Counting is exact for valid JSON: values =
 * 1 + the commas outside strings + the non-empty arrays and objects. Invalid JSON is not reported
 * here (JSON.parse does that); the scan just never reads out of bounds on it.
 */
export function checkJsonLimits(body: Uint8Array | string, limits: JsonLimits): void {
  if (!mayBreakJsonLimits(body.length, limits)) return;
  const outcome =
    typeof body === "string"
      ? scanText(body, limits.maxDepth, limits.maxValues)
      : scanBytes(
          Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength),
          limits.maxDepth,
          limits.maxValues,
        );
  if (outcome === TOO_DEEP) {
    throw new ProtocolViolationError(
      "too-deep",
      `JSON nested deeper than the limit of ${limits.maxDepth} levels (maxDepth)`,
    );
  }
  if (outcome === TOO_MANY_VALUES) {
    throw new ProtocolViolationError(
      "too-many-values",
      `JSON holds more than the limit of ${limits.maxValues} values (maxValues)`,
    );
  }
}

/** RangeError unless limits are positive safe integers: what the scan relies on. */
export function checkJsonLimitsOption(limits: JsonLimits): JsonLimits {
  for (const name of ["maxDepth", "maxValues"] as const) {
    const value = limits[name];
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(`${name} must be a positive integer, got ${String(value)}`);
    }
  }
  return limits;
}

function scanBytes(bytes: Buffer, maxDepth: number, maxValues: number): Outcome {
  const length = bytes.length;
  let depth = 0;
  let values = 1;
  // true right after [ or {: the next significant byte tells whether the container is empty.
  let afterOpener = false;
  for (let i = 0; i < length; i++) {
    const c = bytes[i]!;
    if (c === SPACE || c === LF || c === CR || c === TAB) continue;
    if (afterOpener) {
      afterOpener = false;
      if (c !== CLOSE_BRACKET && c !== CLOSE_BRACE && ++values > maxValues) return TOO_MANY_VALUES;
    }
    if (c === QUOTE) {
      i = byteStringEnd(bytes, i);
    } else if (c === OPEN_BRACKET || c === OPEN_BRACE) {
      if (++depth > maxDepth) return TOO_DEEP;
      afterOpener = true;
    } else if (c === CLOSE_BRACKET || c === CLOSE_BRACE) {
      depth--;
    } else if (c === COMMA) {
      if (++values > maxValues) return TOO_MANY_VALUES;
    }
  }
  return WITHIN;
}

/**
 * Index of the quote that closes the string opened at start, or the end of the input. A quote is
 * escaped when an odd run of backslashes precedes it; each run is walked once, before its quote, so
 * the whole scan stays linear however the escapes are arranged.
 */
function byteStringEnd(bytes: Buffer, start: number): number {
  let from = start + 1;
  for (;;) {
    const quote = bytes.indexOf(QUOTE, from);
    if (quote === -1) return bytes.length;
    let k = quote - 1;
    while (k > start && bytes[k] === BACKSLASH) k--;
    if (((quote - 1 - k) & 1) === 0) return quote;
    from = quote + 1;
  }
}

function scanText(text: string, maxDepth: number, maxValues: number): Outcome {
  const length = text.length;
  let depth = 0;
  let values = 1;
  let afterOpener = false;
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    if (c === SPACE || c === LF || c === CR || c === TAB) continue;
    if (afterOpener) {
      afterOpener = false;
      if (c !== CLOSE_BRACKET && c !== CLOSE_BRACE && ++values > maxValues) return TOO_MANY_VALUES;
    }
    if (c === QUOTE) {
      i = textStringEnd(text, i);
    } else if (c === OPEN_BRACKET || c === OPEN_BRACE) {
      if (++depth > maxDepth) return TOO_DEEP;
      afterOpener = true;
    } else if (c === CLOSE_BRACKET || c === CLOSE_BRACE) {
      depth--;
    } else if (c === COMMA) {
      if (++values > maxValues) return TOO_MANY_VALUES;
    }
  }
  return WITHIN;
}

function textStringEnd(text: string, start: number): number {
  let from = start + 1;
  for (;;) {
    const quote = text.indexOf('"', from);
    if (quote === -1) return text.length;
    let k = quote - 1;
    while (k > start && text.charCodeAt(k) === BACKSLASH) k--;
    if (((quote - 1 - k) & 1) === 0) return quote;
    from = quote + 1;
  }
}
