import { PassThrough } from "node:stream";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  checkJsonLimits,
  DEFAULT_MAX_DEPTH,
  DEFAULT_MAX_VALUES,
  decodeJson,
  encodeFrameWithin,
  type JsonLimits,
  MessageReader,
  mayBreakJsonLimits,
  ProtocolViolationError,
} from "../src/protocol/index.js";

function outcome(body: Uint8Array | string, limits: JsonLimits): string {
  try {
    checkJsonLimits(body, limits);
    return "within";
  } catch (error) {
    if (error instanceof ProtocolViolationError) return error.reason;
    throw error;
  }
}

/** The same JSON as a Buffer, a plain Uint8Array and a string: all three must agree. */
function outcomes(json: string, limits: JsonLimits): string[] {
  const buffer = Buffer.from(json, "utf8");
  const plain = new Uint8Array(buffer.length + 3).subarray(3);
  plain.set(buffer);
  return [outcome(buffer, limits), outcome(plain, limits), outcome(json, limits)];
}

/** Depth and values as the design defines them, from the parsed value. */
function measure(value: unknown): { depth: number; values: number } {
  if (typeof value !== "object" || value === null) return { depth: 0, values: 1 };
  const children = Array.isArray(value) ? value : Object.values(value);
  let depth = 0;
  let values = 1;
  for (const child of children) {
    const inner = measure(child);
    depth = Math.max(depth, inner.depth);
    values += inner.values;
  }
  return { depth: depth + 1, values };
}

/** Seeded so that a failure reproduces. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) & 0x7fffffff;
    return state / 0x80000000;
  };
}

const NASTY = ['"', "\\", "[", "]", "{", "}", ",", ":", "\\\\", '\\"', "é", "😀", "\u0000", "\n", " ", "x"];

function randomValue(next: () => number, depth: number): unknown {
  const kind = Math.floor(next() * (depth > 6 ? 4 : 7));
  switch (kind) {
    case 0:
      return Math.floor(next() * 1e6) - 5e5;
    case 1:
      return Array.from(
        { length: Math.floor(next() * 6) },
        () => NASTY[Math.floor(next() * NASTY.length)],
      ).join("");
    case 2:
      return [true, false, null][Math.floor(next() * 3)];
    case 3:
      return next() * 10;
    case 4:
    case 5:
      return Array.from({ length: Math.floor(next() * 5) }, () => randomValue(next, depth + 1));
    default: {
      const object: Record<string, unknown> = {};
      for (let i = Math.floor(next() * 5); i > 0; i--) {
        object[`${NASTY[Math.floor(next() * NASTY.length)]}${i}`] = randomValue(next, depth + 1);
      }
      return object;
    }
  }
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("checkJsonLimits", () => {
  it("counts depth and values exactly: passes at the limit, fails one below (random JSON, any spacing)", () => {
    const next = random(7);
    let scanned = 0;
    for (let i = 0; i < 2000; i++) {
      const value = randomValue(next, 0);
      const json = JSON.stringify(value, null, i % 3 === 0 ? 2 : i % 3 === 1 ? "\t" : undefined);
      const { depth, values } = measure(value);
      expect(outcomes(json, { maxDepth: Math.max(depth, 1), maxValues: values })).toEqual([
        "within",
        "within",
        "within",
      ]);
      if (depth > 1) {
        expect(outcomes(json, { maxDepth: depth - 1, maxValues: values })).toEqual([
          "too-deep",
          "too-deep",
          "too-deep",
        ]);
        scanned++;
      }
      if (values > 1) {
        // Values are counted as the scan goes; depth is reported if it is broken first.
        const broken = outcome(json, { maxDepth: depth, maxValues: values - 1 });
        expect(broken).toBe("too-many-values");
      }
    }
    expect(scanned).toBeGreaterThan(300);
  });

  it("skips string contents: brackets, commas and escaped quotes inside strings count for nothing", () => {
    const limits = { maxDepth: 1, maxValues: 2 };
    const json = JSON.stringify({ s: '\\"[[[{,,,'.repeat(100_000) });
    expect(json.length).toBeGreaterThan(1_000_000);
    expect(outcomes(json, limits)).toEqual(["within", "within", "within"]);
    // A string ending in an escaped backslash ends at the next quote: what follows is structure.
    expect(outcomes('["\\\\",[[[]]]]', { maxDepth: 4, maxValues: 5 })).toEqual([
      "within",
      "within",
      "within",
    ]);
    expect(outcomes('["\\\\",[[[]]]]', { maxDepth: 3, maxValues: 5 })).toEqual([
      "too-deep",
      "too-deep",
      "too-deep",
    ]);
    // An escaped quote does not end the string: its brackets stay inside.
    expect(outcomes('["\\"[[[[[[",1]', { maxDepth: 1, maxValues: 3 })).toEqual([
      "within",
      "within",
      "within",
    ]);
    // Escapes of every kind, and \u escapes of quote and backslash.
    expect(outcomes('{"a":"\\u0022[[[\\u005c","b":"\\\\\\"]]]"}', { maxDepth: 1, maxValues: 3 })).toEqual([
      "within",
      "within",
      "within",
    ]);
    // Object keys are not values.
    expect(outcomes('{"[[[":1,"]]]":2}', { maxDepth: 1, maxValues: 3 })).toEqual([
      "within",
      "within",
      "within",
    ]);
  });

  it("rejects 8 MiB of [ at the first level past the limit", () => {
    const body = Buffer.alloc(8 * 1024 * 1024, "[");
    expect(outcome(body, { maxDepth: DEFAULT_MAX_DEPTH, maxValues: DEFAULT_MAX_VALUES })).toBe("too-deep");
    expect(outcome(body.toString("latin1"), { maxDepth: 64, maxValues: DEFAULT_MAX_VALUES })).toBe(
      "too-deep",
    );
  });

  it("[{},{},...]: n empty objects are n + 1 values", () => {
    const n = 5000;
    const json = `[${Array.from({ length: n }, () => "{}").join(",")}]`;
    expect(outcomes(json, { maxDepth: 2, maxValues: n + 1 })).toEqual(["within", "within", "within"]);
    expect(outcomes(json, { maxDepth: 2, maxValues: n })).toEqual([
      "too-many-values",
      "too-many-values",
      "too-many-values",
    ]);
    expect(outcomes(json, { maxDepth: 1, maxValues: n + 1 })).toEqual(["too-deep", "too-deep", "too-deep"]);
    // 1,000,001 values: one past the default.
    const many = `[${"0,".repeat(DEFAULT_MAX_VALUES - 1)}0]`;
    expect(outcome(many, { maxDepth: 64, maxValues: DEFAULT_MAX_VALUES })).toBe("too-many-values");
    expect(outcome(many, { maxDepth: 64, maxValues: DEFAULT_MAX_VALUES + 1 })).toBe("within");
  });

  it("exact boundaries: depth 64 and 65, empty containers, a top-level scalar", () => {
    const limits = { maxDepth: 64, maxValues: 1000 };
    expect(outcomes(`${"[".repeat(64)}${"]".repeat(64)}`, limits)).toEqual(["within", "within", "within"]);
    expect(outcomes(`${"[".repeat(65)}${"]".repeat(65)}`, limits)).toEqual([
      "too-deep",
      "too-deep",
      "too-deep",
    ]);
    expect(outcomes(`${'{"a":'.repeat(64)}1${"}".repeat(64)}`, limits)).toEqual([
      "within",
      "within",
      "within",
    ]);
    expect(outcomes(`${'{"a":'.repeat(65)}1${"}".repeat(65)}`, limits)).toEqual([
      "too-deep",
      "too-deep",
      "too-deep",
    ]);
    // [ [], [ ], {} ]: empty containers are one value each, whatever the spacing inside.
    expect(outcomes("[ [], [ \n ], {\t} ]", { maxDepth: 2, maxValues: 4 })).toEqual([
      "within",
      "within",
      "within",
    ]);
    expect(outcomes("[ [], [ \n ], {\t} ]", { maxDepth: 2, maxValues: 3 })).toEqual([
      "too-many-values",
      "too-many-values",
      "too-many-values",
    ]);
    expect(outcomes('"just a string"', { maxDepth: 1, maxValues: 1 })).toEqual([
      "within",
      "within",
      "within",
    ]);
  });

  it("skips the scan only for texts too short to break a limit", () => {
    const limits = { maxDepth: 64, maxValues: 1_000_000 };
    // 65 levels take 130 bytes.
    expect(mayBreakJsonLimits(129, limits)).toBe(false);
    expect(mayBreakJsonLimits(130, limits)).toBe(true);
    // 4 values take 7 bytes: [1,1,1].
    expect(mayBreakJsonLimits(6, { maxDepth: 100, maxValues: 3 })).toBe(false);
    expect(mayBreakJsonLimits(7, { maxDepth: 100, maxValues: 3 })).toBe(true);
    expect(outcome("[1,1,1]", { maxDepth: 100, maxValues: 3 })).toBe("too-many-values");
    expect(outcome("[[1]]", { maxDepth: 1, maxValues: 100 })).toBe("too-deep");
  });

  it("names the limit it enforces in its message", () => {
    expect(() => checkJsonLimits("[[[]]]", { maxDepth: 2, maxValues: 10 })).toThrow(
      "JSON nested deeper than the limit of 2 levels (maxDepth)",
    );
    expect(() => checkJsonLimits("[1,2,3]", { maxDepth: 2, maxValues: 2 })).toThrow(
      "JSON holds more than the limit of 2 values (maxValues)",
    );
  });

  it("never reads out of bounds on invalid JSON (it is JSON.parse's to reject)", () => {
    for (const text of ['"', '["', '"\\', "]]]]", "}", "[,,,", '"\\\\\\', '\\\\\\\\"', "", " "]) {
      expect(["within", "too-deep", "too-many-values"]).toContain(
        outcome(text, { maxDepth: 1, maxValues: 1 }),
      );
    }
  });
});

describe("encodeFrameWithin (the send side)", () => {
  const limits = { maxFrameBytes: 1024, maxDepth: 4, maxValues: 64 };
  it("encodes a message within the peer's limits, and names the limit a message breaks", () => {
    const frame = encodeFrameWithin({ type: "request", id: "1", payload: [[1]] }, limits);
    expect(decodeJson(frame.subarray(4), limits)).toEqual({ type: "request", id: "1", payload: [[1]] });
    const broken = (message: object) => {
      try {
        encodeFrameWithin(message, limits);
      } catch (error) {
        return [(error as ProtocolViolationError).reason, (error as Error).message];
      }
      return ["encoded"];
    };
    expect(broken({ payload: [[[[1]]]] })).toEqual(["too-deep", expect.stringContaining("(maxDepth)")]);
    expect(broken({ payload: Array(64).fill(0) })).toEqual([
      "too-many-values",
      expect.stringContaining("(maxValues)"),
    ]);
    expect(broken({ payload: "x".repeat(1024) })).toEqual([
      "frame-too-large",
      expect.stringContaining("(maxFrameBytes)"),
    ]);
    expect(() => encodeFrameWithin({ n: 1n } as object, limits)).toThrow(TypeError);
  });
});

describe("limits in decodeJson and MessageReader", () => {
  it("decodeJson checks the bytes before decoding them", () => {
    const parse = vi.spyOn(JSON, "parse");
    expect(() => decodeJson(Buffer.from("[[[1]]]"), { maxDepth: 2, maxValues: 10 })).toThrow(
      expect.objectContaining({ reason: "too-deep" }),
    );
    expect(parse).not.toHaveBeenCalled();
    expect(decodeJson(Buffer.from("[[[1]]]"))).toEqual([[[1]]]);
  });

  it("rejects a 16 MiB deep frame without parsing it (heap measured)", async () => {
    const body = Buffer.alloc(16 * 1024 * 1024);
    body.fill("[", 0, body.length / 2);
    body.fill("]", body.length / 2);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(body.length, 0);
    const stream = new PassThrough({ highWaterMark: 1024 * 1024 });
    const violations: ProtocolViolationError[] = [];
    const parse = vi.spyOn(JSON, "parse");
    new MessageReader(stream, {
      onMessage: () => undefined,
      onViolation: (error) => violations.push(error),
    });
    globalThis.gc?.();
    const before = process.memoryUsage().heapUsed;
    stream.write(header);
    stream.write(body);
    await vi.waitFor(() => expect(violations.map((error) => error.reason)).toEqual(["too-deep"]));
    const grown = process.memoryUsage().heapUsed - before;
    expect(parse).not.toHaveBeenCalled();
    // Parsed, the frame's 8 million nested arrays would take hundreds of MiB of heap; its text alone 16.
    expect(grown).toBeLessThan(8 * 1024 * 1024);
  });

  it("the reader enforces the limits it is given, and defaults to 64 / 100,000", async () => {
    const frame = (json: string) => {
      const bytes = Buffer.from(json);
      const header = Buffer.alloc(4);
      header.writeUInt32BE(bytes.length, 0);
      return Buffer.concat([header, bytes]);
    };
    const run = async (json: string, options: { maxDepth?: number; maxValues?: number }) => {
      const stream = new PassThrough();
      const seen: string[] = [];
      new MessageReader(stream, {
        ...options,
        onMessage: () => seen.push("message"),
        onViolation: (error) => seen.push(error.reason),
      });
      stream.write(frame(json));
      await new Promise((resolve) => setImmediate(resolve));
      return seen;
    };
    const deep = (n: number) => `${"[".repeat(n)}${"]".repeat(n)}`;
    expect(await run(deep(64), {})).toEqual(["message"]);
    expect(await run(deep(65), {})).toEqual(["too-deep"]);
    expect(await run(deep(9), { maxDepth: 8 })).toEqual(["too-deep"]);
    expect(await run("[1,2,3,4,5,6,7,8,9,10,11]", { maxValues: 11 })).toEqual(["too-many-values"]);
    expect(await run("[1,2,3,4,5,6,7,8,9,10]", { maxValues: 11 })).toEqual(["message"]);
    expect(
      () => new MessageReader(new PassThrough(), { maxDepth: 0, onMessage() {}, onViolation() {} }),
    ).toThrow(RangeError);
  });
});
