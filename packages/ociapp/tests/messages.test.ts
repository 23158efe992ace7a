import { describe, expect, it } from "vitest";
import { ProtocolViolationError, parseClientMessage, parseServerMessage } from "../src/protocol/index.js";

function reason(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    if (error instanceof ProtocolViolationError) return error.reason;
    throw error;
  }
  return "accepted";
}

describe("parseClientMessage", () => {
  it("accepts requests and cancels", () => {
    expect(parseClientMessage({ type: "request", id: "1", payload: null })).toEqual({
      type: "request",
      id: "1",
      payload: null,
    });
    expect(parseClientMessage({ type: "cancel", id: "1", extra: true })).toMatchObject({ type: "cancel" });
  });

  it.each([
    ["null", null],
    ["an array", [1]],
    ["a string", "request"],
    ["no type", { id: "1" }],
    ["an unknown type", { type: "response", id: "1", payload: 1 }],
    ["a request without id", { type: "request", payload: 1 }],
    ["a request with a numeric id", { type: "request", id: 1, payload: 1 }],
    ["a request with an empty id", { type: "request", id: "", payload: 1 }],
    ["a request without payload", { type: "request", id: "1" }],
    ["a cancel without id", { type: "cancel" }],
  ])("rejects %s as invalid-message", (_label, value) => {
    expect(reason(() => parseClientMessage(value))).toBe("invalid-message");
  });

  it("rejects a hello from a client", () => {
    expect(reason(() => parseClientMessage({ type: "hello", protocol: 1 }))).toBe("unexpected-hello");
  });
});

describe("parseServerMessage", () => {
  it("accepts hello, response and error", () => {
    const hello = { type: "hello", protocol: 1, maxConcurrency: 4, maxFrameBytes: 10, app: { name: "x" } };
    expect(parseServerMessage(hello)).toBe(hello);
    expect(parseServerMessage({ type: "response", id: "1", payload: { a: 1 } })).toMatchObject({ id: "1" });
    expect(
      parseServerMessage({ type: "error", id: "1", error: { type: "Cancelled", message: "x", details: [] } }),
    ).toMatchObject({ error: { type: "Cancelled" } });
  });

  it.each([
    ["a hello without maxConcurrency", { type: "hello", protocol: 1, maxFrameBytes: 10 }],
    ["a hello with zero maxFrameBytes", { type: "hello", protocol: 1, maxConcurrency: 1, maxFrameBytes: 0 }],
    ["a hello with a bad app", { type: "hello", protocol: 1, maxConcurrency: 1, maxFrameBytes: 1, app: 3 }],
    ["a response without payload", { type: "response", id: "1" }],
    ["an error without error", { type: "error", id: "1" }],
    ["an error with a bad error", { type: "error", id: "1", error: { type: 1, message: "x" } }],
    ["a request", { type: "request", id: "1", payload: 1 }],
  ])("rejects %s", (_label, value) => {
    expect(reason(() => parseServerMessage(value))).toBe("invalid-message");
  });
});
