import { describe, expect, it } from "vitest";
import {
  DEFAULT_MAX_FRAME_BYTES,
  decodeJson,
  encodeFrame,
  FrameDecoder,
  ProtocolViolationError,
} from "../src/protocol/index.js";

function header(length: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32BE(length, 0);
  return buffer;
}

function violation(fn: () => unknown): ProtocolViolationError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ProtocolViolationError);
    return error as ProtocolViolationError;
  }
  throw new Error("expected a ProtocolViolationError");
}

describe("encodeFrame", () => {
  it("writes a 4-byte big-endian length then UTF-8 JSON", () => {
    const frame = encodeFrame({ type: "request", id: "1", payload: "é" });
    const body = Buffer.from(JSON.stringify({ type: "request", id: "1", payload: "é" }), "utf8");
    expect(frame.readUInt32BE(0)).toBe(body.length);
    expect(frame.subarray(4)).toEqual(body);
  });

  it("measures large bodies exactly", () => {
    const payload = "ü".repeat(100_000);
    const frame = encodeFrame({ payload });
    expect(frame.readUInt32BE(0)).toBe(frame.length - 4);
    expect(decodeJson(frame.subarray(4))).toEqual({ payload });
  });

  it("refuses a body past maxFrameBytes, small or large", () => {
    expect(violation(() => encodeFrame({ value: "x".repeat(100) }, 50)).reason).toBe("frame-too-large");
    expect(violation(() => encodeFrame({ value: "x".repeat(5000) }, 4096)).reason).toBe("frame-too-large");
  });
});

describe("FrameDecoder", () => {
  const messages = Array.from({ length: 50 }, (_, i) => ({ type: "request", id: String(i), payload: i }));
  const stream = Buffer.concat(messages.map((message) => encodeFrame(message)));

  it("decodes many frames from one chunk", () => {
    const decoder = new FrameDecoder();
    const bodies = decoder.push(stream);
    expect(bodies.map((body) => decodeJson(body))).toEqual(messages);
    expect(decoder.midFrame).toBe(false);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it("decodes frames split across many chunks, including single-byte chunks", () => {
    for (const size of [1, 2, 3, 5, 7, 64]) {
      const decoder = new FrameDecoder();
      const bodies: Buffer[] = [];
      for (let offset = 0; offset < stream.length; offset += size) {
        bodies.push(...decoder.push(stream.subarray(offset, offset + size)));
      }
      expect(bodies.map((body) => decodeJson(body))).toEqual(messages);
      expect(decoder.midFrame).toBe(false);
    }
  });

  it("decodes the same frames whatever the chunk boundaries (seeded random splits)", () => {
    let seed = 42;
    const random = (): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const varied = Array.from({ length: 200 }, (_, i) => ({
      id: String(i),
      payload: "ü€𝄞".repeat(Math.floor(random() * 50)),
    }));
    const bytes = Buffer.concat(varied.map((message) => encodeFrame(message)));
    for (let round = 0; round < 50; round++) {
      const decoder = new FrameDecoder();
      const bodies: Buffer[] = [];
      let offset = 0;
      while (offset < bytes.length) {
        const size = 1 + Math.floor(random() * 300);
        bodies.push(...decoder.push(bytes.subarray(offset, offset + size)));
        offset += size;
      }
      expect(bodies.map((body) => decodeJson(body))).toEqual(varied);
      expect(decoder.bufferedBytes).toBe(0);
    }
  });

  it("reports midFrame from the first byte of a frame until its last", () => {
    const frame = encodeFrame({ type: "cancel", id: "a" });
    const decoder = new FrameDecoder();
    expect(decoder.midFrame).toBe(false);
    expect(decoder.push(frame.subarray(0, 1))).toEqual([]);
    expect(decoder.midFrame).toBe(true);
    expect(decoder.push(frame.subarray(1, 6))).toEqual([]);
    expect(decoder.midFrame).toBe(true);
    expect(decoder.bufferedBytes).toBe(2);
    expect(decoder.push(frame.subarray(6))).toHaveLength(1);
    expect(decoder.midFrame).toBe(false);
  });

  it("accepts Uint8Array chunks that are not Buffers", () => {
    const frame = encodeFrame({ type: "cancel", id: "a" });
    const bodies = new FrameDecoder().push(new Uint8Array(frame));
    expect(decodeJson(bodies[0]!)).toEqual({ type: "cancel", id: "a" });
  });

  it("rejects a zero length", () => {
    expect(violation(() => new FrameDecoder().push(header(0))).reason).toBe("empty-frame");
  });

  it("rejects a length above the maximum as soon as the header is complete", () => {
    const decoder = new FrameDecoder({ maxFrameBytes: 10 });
    expect(decoder.push(header(11).subarray(0, 3))).toEqual([]);
    expect(violation(() => decoder.push(header(11).subarray(3))).reason).toBe("frame-too-large");
    // Poisoned: later pushes keep failing.
    expect(violation(() => decoder.push(Buffer.from("x"))).reason).toBe("frame-too-large");
  });

  it("rejects a declared 4 GiB length without allocating it", () => {
    globalThis.gc?.();
    const before = process.memoryUsage();
    const decoder = new FrameDecoder();
    const error = violation(() => decoder.push(Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3])));
    expect(error.reason).toBe("frame-too-large");
    expect(error.message).toContain(String(0xffffffff));
    const after = process.memoryUsage();
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(1024 * 1024);
    expect(after.heapUsed - before.heapUsed).toBeLessThan(16 * 1024 * 1024);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it("holds a large frame only as the chunks received so far", () => {
    const decoder = new FrameDecoder({ maxFrameBytes: DEFAULT_MAX_FRAME_BYTES });
    decoder.push(header(DEFAULT_MAX_FRAME_BYTES));
    decoder.push(Buffer.alloc(1000, 0x20));
    expect(decoder.bufferedBytes).toBe(1000);
    expect(decoder.midFrame).toBe(true);
  });

  it("validates maxFrameBytes", () => {
    expect(() => new FrameDecoder({ maxFrameBytes: 0 })).toThrow(/maxFrameBytes.*got 0/);
    expect(() => new FrameDecoder({ maxFrameBytes: 2 ** 32 })).toThrow(/maxFrameBytes/);
  });
});

describe("decodeJson", () => {
  it("rejects invalid UTF-8", () => {
    expect(violation(() => decodeJson(Buffer.from([0x7b, 0xff, 0x7d]))).reason).toBe("invalid-utf8");
    // An overlong encoding of "/" is invalid UTF-8 even though a lenient decoder would accept it.
    expect(violation(() => decodeJson(Buffer.from([0x22, 0xc0, 0xaf, 0x22]))).reason).toBe("invalid-utf8");
    // An encoded lone surrogate (U+D800) is not UTF-8 either.
    expect(violation(() => decodeJson(Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22]))).reason).toBe(
      "invalid-utf8",
    );
  });

  it("accepts a real U+FFFD, and rejects invalid bytes beside one", () => {
    // The strict check runs only when the decoded text holds U+FFFD: a genuine one must pass it.
    expect(decodeJson(Buffer.from('{"a":"\uFFFD"}', "utf8"))).toEqual({ a: "\uFFFD" });
    const mixed = Buffer.concat([Buffer.from('"\uFFFD', "utf8"), Buffer.from([0xff]), Buffer.from('"')]);
    expect(violation(() => decodeJson(mixed)).reason).toBe("invalid-utf8");
    // Invalid input that is not JSON either is reported as invalid UTF-8, as before.
    expect(violation(() => decodeJson(Buffer.from([0xff]))).reason).toBe("invalid-utf8");
  });

  it("rejects invalid JSON", () => {
    expect(violation(() => decodeJson(Buffer.from("{nope"))).reason).toBe("invalid-json");
  });

  it("parses JSON", () => {
    expect(decodeJson(Buffer.from('{"a":[1,"ü"]}'))).toEqual({ a: [1, "ü"] });
  });
});
