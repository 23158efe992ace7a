import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { VERSION } from "../src/index.js";
import { encodeFrame } from "../src/protocol/index.js";
import { hostHello, TestClient, type TestClientOptions } from "./helpers/client.js";
import { BEHAVIOUR_APP, killAll, type ServerProcess, startCli } from "./helpers/server-process.js";

function header(length: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32BE(length, 0);
  return buffer;
}

function rawFrame(body: string | Buffer): Buffer {
  const bytes = typeof body === "string" ? Buffer.from(body, "utf8") : body;
  return Buffer.concat([header(bytes.length), bytes]);
}

let server: ServerProcess;

beforeAll(async () => {
  server = await startCli([
    "--app",
    BEHAVIOUR_APP,
    "--max-frame-bytes",
    "4096",
    "--max-values",
    "1000",
    "--frame-timeout",
    "300",
  ]);
});

afterAll(killAll);

describe("ociapp serve (child process)", () => {
  it("greets every connection with its v2 hello, listing prime and prime-request", async () => {
    const client = await TestClient.connect(server.socketPath);
    expect(await client.hello).toEqual({
      type: "hello",
      protocol: 2,
      role: "app",
      maxConcurrency: 64,
      limits: { maxFrameBytes: 4096, maxDepth: 64, maxValues: 1000 },
      capabilities: ["cancel", "ping", "prime", "prime-request", "log", "trace"],
      app: { name: "behaviour", version: "1.2.3" },
      sdk: { name: "ociapp", version: VERSION },
    });
    client.close();
  });

  it("answers 10,000 pipelined requests on one connection, each matched to its id", async () => {
    const client = await TestClient.connect(server.socketPath);
    const count = 10_000;
    const frames: Buffer[] = [];
    const answers: Promise<unknown>[] = [];
    for (let i = 0; i < count; i++) {
      const id = `req-${i}`;
      answers.push(client.answer(id));
      frames.push(encodeFrame({ type: "request", id, payload: { op: "echo", value: `value-${i}` } }));
    }
    // Written in one go: the server must apply backpressure rather than buffer without bound.
    client.write(Buffer.concat(frames));
    const results = await Promise.all(answers);
    results.forEach((message, i) => {
      expect(message).toEqual({ type: "response", id: `req-${i}`, payload: { value: `value-${i}` } });
    });
    expect(client.received).toHaveLength(count);
    client.close();
  });

  it("answers pipelined requests in completion order, not arrival order", async () => {
    const client = await TestClient.connect(server.socketPath);
    const slow = client.request("slow", { op: "sleep", ms: 200 });
    const fast = client.request("fast", { op: "echo", value: "first" });
    await Promise.all([slow, fast]);
    expect(client.received.map((message) => message.id)).toEqual(["fast", "slow"]);
    client.close();
  });

  it("maps each failure to its error type; an answer past the host's limits is ResponseTooLarge", async () => {
    // The host's limits bound what the app sends, whatever the app's own.
    const client = await TestClient.connect(server.socketPath, {
      hello: hostHello({ limits: { maxFrameBytes: 4096, maxDepth: 64, maxValues: 1_000_000 } }),
    });
    const [invalid, thrown, rejected, badResponse, tooLarge] = await Promise.all([
      client.request("v", { op: "nope" }),
      client.request("t", { op: "throw", value: "short" }),
      client.request("r", { op: "reject-string" }),
      client.request("b", { op: "bad-response" }),
      client.request("l", { op: "big", ms: 10_000 }),
    ]);
    expect(invalid).toMatchObject({ type: "error", id: "v", error: { type: "ValidationError" } });
    expect(invalid.type === "error" && Array.isArray(invalid.error.details)).toBe(true);
    expect(thrown).toEqual({
      type: "error",
      id: "t",
      error: { type: "TeapotError", message: "I'm a teapot: short", details: { short: true, stout: true } },
    });
    expect(rejected).toMatchObject({ type: "error", error: { type: "Error", message: /plain string/ } });
    expect(badResponse).toMatchObject({ type: "error", error: { type: "ResponseValidationError" } });
    expect(tooLarge).toMatchObject({
      type: "error",
      error: {
        type: "ResponseTooLarge",
        message: expect.stringContaining("limit of 4096 bytes (maxFrameBytes)"),
      },
    });
    // 10,000 bytes are fine for a host that takes them.
    const roomy = await TestClient.connect(server.socketPath);
    expect(await roomy.request("l", { op: "big", ms: 10_000 })).toMatchObject({ type: "response" });
    roomy.close();
    // The connection survives all of them.
    expect(await client.request("ok", { op: "echo", value: "still here" })).toMatchObject({
      payload: { value: "still here" },
    });
    client.close();
  });

  it("survives a rejection the app never awaited", async () => {
    const client = await TestClient.connect(server.socketPath);
    expect(await client.request("s", { op: "stray-rejection" })).toMatchObject({
      payload: { value: "answered" },
    });
    await expect.poll(() => server.stderr()).toContain("unhandled rejection in the app: stray failure");
    expect(await client.request("t", { op: "echo", value: "still up" })).toMatchObject({ type: "response" });
    client.close();
  });

  it("cancel aborts the context signal and the request ends with Cancelled", async () => {
    const client = await TestClient.connect(server.socketPath);
    const answer = client.request("c1", { op: "wait-abort" });
    // Ordering on one connection guarantees the request is in flight when the cancel arrives.
    client.cancel("c1");
    expect(await answer).toMatchObject({ type: "error", id: "c1", error: { type: "Cancelled" } });
    // A cancel for an id not in flight is ignored.
    client.cancel("never-sent");
    client.cancel("c1");
    expect(await client.request("after", { op: "echo", value: "x" })).toMatchObject({ type: "response" });
    expect(client.received.filter((message) => message.id === "c1")).toHaveLength(1);
    client.close();
  });

  const noHello: TestClientOptions = { hello: false };
  const violations: [string, (client: TestClient) => void, string, TestClientOptions?][] = [
    ["a zero length", (c) => c.write(header(0)), "empty-frame"],
    ["a length above the maximum", (c) => c.write(header(4097)), "frame-too-large"],
    [
      "a declared 4 GiB length",
      (c) => c.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x7b])),
      "frame-too-large",
    ],
    ["invalid UTF-8", (c) => c.write(rawFrame(Buffer.from([0x7b, 0xc3, 0x28, 0x7d]))), "invalid-utf8"],
    ["invalid JSON", (c) => c.write(rawFrame("{not json")), "invalid-json"],
    ["a JSON value that is not an object", (c) => c.write(rawFrame("[1,2]")), "invalid-message"],
    ["an unknown message type", (c) => c.write(rawFrame('{"type":"launch","id":"1"}')), "invalid-message"],
    [
      "a request without an id",
      (c) => c.write(rawFrame('{"type":"request","payload":1}')),
      "invalid-message",
    ],
    [
      "an id of 129 characters",
      (c) => c.write(encodeFrame({ type: "request", id: "i".repeat(129), payload: {} })),
      "invalid-message",
    ],
    [
      "a frame nested 65 deep (the default maxDepth is 64)",
      (c) => c.write(rawFrame(`{"type":"request","id":"d","payload":${"[".repeat(64)}${"]".repeat(64)}}`)),
      "too-deep",
    ],
    [
      "a frame of 1,001 values (this server's maxValues is 1,000)",
      (c) => c.write(encodeFrame({ type: "request", id: "v", payload: Array(997).fill(0) })),
      "too-many-values",
    ],
    ["a second hello", (c) => c.write(encodeFrame(hostHello())), "unexpected-hello"],
    [
      "a request before the hello",
      (c) => c.write(encodeFrame({ type: "request", id: "early", payload: {} })),
      "missing-hello",
      noHello,
    ],
    [
      "a hello of protocol 1",
      (c) => c.write(rawFrame('{"type":"hello","protocol":1,"maxConcurrency":1,"maxFrameBytes":1024}')),
      "invalid-message",
      noHello,
    ],
    [
      "a hello with the app's role",
      (c) => c.write(encodeFrame(hostHello({ role: "app" as "host" }))),
      "invalid-message",
      noHello,
    ],
    [
      "a hello announcing limits below the minimum",
      (c) =>
        c.write(encodeFrame(hostHello({ limits: { maxFrameBytes: 100, maxDepth: 64, maxValues: 1000 } }))),
      "invalid-message",
      noHello,
    ],
    [
      "a request whose id is already in flight",
      (c) => {
        c.write(encodeFrame({ type: "request", id: "dup", payload: { op: "wait-abort" } }));
        c.write(encodeFrame({ type: "request", id: "dup", payload: { op: "echo" } }));
      },
      "duplicate-id",
    ],
    [
      "a ping whose id is a request's in flight",
      (c) => {
        c.write(encodeFrame({ type: "request", id: "same", payload: { op: "wait-abort" } }));
        c.write(encodeFrame({ type: "ping", id: "same" }));
      },
      "duplicate-id",
    ],
    ["a frame that stalls past the frame timeout", (c) => c.write(header(100)), "frame-timeout"],
  ];

  it.each(violations)(
    "closes the connection on %s; another connection keeps working",
    async (_label, send, reason, options) => {
      const healthy = await TestClient.connect(server.socketPath);
      const hostile = await TestClient.connect(server.socketPath, options);
      send(hostile);
      await hostile.closed;
      expect(server.stderr()).toContain(`protocol violation (${reason})`);
      expect(await healthy.request("h", { op: "echo", value: "alive" })).toEqual({
        type: "response",
        id: "h",
        payload: { value: "alive" },
      });
      healthy.close();
    },
  );

  it("names both protocol versions when a v1 host says hello", async () => {
    const hostile = await TestClient.connect(server.socketPath, noHello);
    hostile.write(rawFrame('{"type":"hello","protocol":1}'));
    await hostile.closed;
    expect(server.stderr()).toContain(
      "protocol violation (invalid-message): protocol mismatch: the host speaks protocol 1, this side speaks 2",
    );
  });
});
