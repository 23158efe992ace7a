import { describe, expect, it } from "vitest";
import {
  type AppHelloMessage,
  type HostHelloMessage,
  ProtocolViolationError,
  parseAppMessage,
  parseClientMessage,
  parseHostMessage,
  parseServerMessage,
  parseTraceContext,
} from "../src/protocol/index.js";

function reason(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    if (error instanceof ProtocolViolationError) return error.reason;
    throw error;
  }
  return "accepted";
}

const limits = { maxFrameBytes: 16_777_216, maxDepth: 64, maxValues: 1_000_000 };
const hostHello: HostHelloMessage = {
  type: "hello",
  protocol: 2,
  role: "host",
  limits,
  capabilities: ["cancel", "ping"],
  logRecords: false,
};
const appHello: AppHelloMessage = {
  type: "hello",
  protocol: 2,
  role: "app",
  maxConcurrency: 64,
  limits,
  capabilities: ["cancel", "ping", "prime", "log", "trace", "stack"],
  app: { name: "echo-app", version: "0.1.0" },
  sdk: { name: "ociapp", version: "0.2.0" },
};

describe("parseHostMessage", () => {
  it("accepts the design's frames, returning the same object", () => {
    for (const message of [
      hostHello,
      { ...hostHello, logRecords: undefined, future: { field: 1 } },
      { type: "request", id: "42", payload: { a: 1 }, trace: { traceparent: "whatever: read lazily" } },
      { type: "request", id: "i".repeat(128), payload: null },
      { type: "cancel", id: "42", extra: true },
      { type: "ping", id: "p1" },
      { type: "ping", id: "p1", prime: true },
      { type: "prime", id: "q1" },
    ]) {
      expect(parseHostMessage(message)).toBe(message);
    }
    expect(parseClientMessage).toBe(parseHostMessage);
  });

  it.each([
    ["null", null],
    ["an array", [1]],
    ["a string", "request"],
    ["no type", { id: "1" }],
    ["an app frame", { type: "response", id: "1", payload: 1 }],
    ["a request without id", { type: "request", payload: 1 }],
    ["a request with a numeric id", { type: "request", id: 1, payload: 1 }],
    ["a request with an empty id", { type: "request", id: "", payload: 1 }],
    ["a request with an id of 129 chars", { type: "request", id: "i".repeat(129), payload: 1 }],
    ["a request without payload", { type: "request", id: "1" }],
    ["a cancel without id", { type: "cancel" }],
    ["a ping without id", { type: "ping" }],
    ["a ping with a string prime", { type: "ping", id: "p", prime: "yes" }],
    ["a prime without id", { type: "prime" }],
    ["a hello of protocol 1", { type: "hello", protocol: 1 }],
    ["a hello without a protocol", { ...hostHello, protocol: undefined }],
    ["a hello with the app's role", { ...hostHello, role: "app" }],
    ["a hello without a role", { ...hostHello, role: undefined }],
    ["a hello without limits", { ...hostHello, limits: undefined }],
    ["a hello with maxFrameBytes below 1 KiB", { ...hostHello, limits: { ...limits, maxFrameBytes: 1023 } }],
    [
      "a hello with maxFrameBytes past 4 GiB",
      { ...hostHello, limits: { ...limits, maxFrameBytes: 2 ** 32 } },
    ],
    ["a hello with maxDepth 3", { ...hostHello, limits: { ...limits, maxDepth: 3 } }],
    ["a hello with maxValues 63", { ...hostHello, limits: { ...limits, maxValues: 63 } }],
    ["a hello with fractional limits", { ...hostHello, limits: { ...limits, maxDepth: 64.5 } }],
    ["a hello without capabilities", { ...hostHello, capabilities: undefined }],
    ["a hello with 65 capabilities", { ...hostHello, capabilities: Array(65).fill("x") }],
    ["a hello with a capability of 65 chars", { ...hostHello, capabilities: ["c".repeat(65)] }],
    ["a hello with a non-string capability", { ...hostHello, capabilities: [1] }],
    ["a hello with a string logRecords", { ...hostHello, logRecords: "true" }],
  ])("rejects %s as invalid-message", (_label, value) => {
    expect(reason(() => parseHostMessage(value))).toBe("invalid-message");
  });

  it("names both versions on a protocol mismatch", () => {
    expect(() => parseHostMessage({ type: "hello", protocol: 1, maxConcurrency: 1 })).toThrow(
      "protocol mismatch: the host speaks protocol 1, this side speaks 2",
    );
    expect(() => parseAppMessage({ type: "hello", protocol: 3 })).toThrow(
      "protocol mismatch: the app speaks protocol 3, this side speaks 2",
    );
  });

  it("takes the hello at its bounds", () => {
    const bounded = {
      ...hostHello,
      limits: { maxFrameBytes: 1024, maxDepth: 4, maxValues: 64 },
      capabilities: Array.from({ length: 64 }, (_, i) => `${i}`.padEnd(64, "c")),
    };
    expect(parseHostMessage(bounded)).toBe(bounded);
    const largest = { ...hostHello, limits: { ...limits, maxFrameBytes: 0xffff_ffff } };
    expect(parseHostMessage(largest)).toBe(largest);
  });
});

describe("parseAppMessage", () => {
  it("accepts the design's frames, returning the same object", () => {
    for (const message of [
      appHello,
      { ...appHello, app: undefined, sdk: { name: "ociapp" } },
      { ...appHello, app: { name: "n".repeat(256), version: "v".repeat(256) } },
      { type: "response", id: "42", payload: { a: 1 } },
      {
        type: "error",
        id: "42",
        error: { type: "Error", message: "m", details: {}, stack: "Error: m\n    at x" },
      },
      { type: "pong", id: "p1" },
      { type: "log", level: "info", id: "42", text: "one console line" },
      { type: "log", level: "debug", text: "t".repeat(8192), dropped: 3 },
      { type: "log", level: "warn", id: "42", text: "", dropped: 0 },
    ]) {
      expect(parseAppMessage(message)).toBe(message);
    }
    expect(parseServerMessage).toBe(parseAppMessage);
  });

  it.each([
    ["a v1 hello", { type: "hello", protocol: 1, maxConcurrency: 4, maxFrameBytes: 10 }],
    ["a hello with the host's role", { ...appHello, role: "host" }],
    ["a hello without maxConcurrency", { ...appHello, maxConcurrency: undefined }],
    ["a hello with zero maxConcurrency", { ...appHello, maxConcurrency: 0 }],
    ["a hello with a bad app", { ...appHello, app: 3 }],
    ["a hello with a numeric app name", { ...appHello, app: { name: 3 } }],
    ["a hello with an app name of 257 chars", { ...appHello, app: { name: "n".repeat(257) } }],
    ["a hello with an sdk version of 257 chars", { ...appHello, sdk: { version: "v".repeat(257) } }],
    ["a response without payload", { type: "response", id: "1" }],
    ["a response with a long id", { type: "response", id: "i".repeat(129), payload: 1 }],
    ["an error without error", { type: "error", id: "1" }],
    ["an error with a bad error", { type: "error", id: "1", error: { type: 1, message: "x" } }],
    [
      "an error with a numeric stack",
      { type: "error", id: "1", error: { type: "E", message: "x", stack: 1 } },
    ],
    ["a pong without id", { type: "pong" }],
    ["a log without level", { type: "log", id: "1", text: "x" }],
    ["a log of level trace", { type: "log", level: "trace", text: "x" }],
    ["a log without text", { type: "log", level: "info", id: "1" }],
    ["a log of 8,193 chars", { type: "log", level: "info", text: "t".repeat(8193) }],
    ["a log with an empty id", { type: "log", level: "info", id: "", text: "x" }],
    ["a log with negative dropped", { type: "log", level: "info", text: "x", dropped: -1 }],
    ["a request", { type: "request", id: "1", payload: 1 }],
  ])("rejects %s", (_label, value) => {
    expect(reason(() => parseAppMessage(value))).toBe("invalid-message");
  });
});

describe("parseTraceContext", () => {
  const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

  it("keeps a well-formed trace context", () => {
    expect(parseTraceContext({ traceparent, tracestate: "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE" })).toEqual(
      {
        traceparent,
        tracestate: "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
      },
    );
    expect(parseTraceContext({ traceparent })).toEqual({ traceparent });
    expect(parseTraceContext({ traceparent, tracestate: "s".repeat(512) })).toMatchObject({ traceparent });
  });

  it.each([
    ["nothing", undefined],
    ["a string", traceparent],
    ["no traceparent", { tracestate: "a=b" }],
    ["uppercase hex", { traceparent: traceparent.toUpperCase() }],
    ["a short trace id", { traceparent: "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01" }],
    ["a trailing character", { traceparent: `${traceparent}0` }],
    ["a numeric traceparent", { traceparent: 1 }],
  ])("drops %s", (_label, value) => {
    expect(parseTraceContext(value)).toBeUndefined();
  });

  it("drops a malformed tracestate and keeps the traceparent", () => {
    expect(parseTraceContext({ traceparent, tracestate: "s".repeat(513) })).toEqual({ traceparent });
    expect(parseTraceContext({ traceparent, tracestate: 7 })).toEqual({ traceparent });
    expect(parseTraceContext({ traceparent, tracestate: "" })).toEqual({ traceparent });
  });
});
