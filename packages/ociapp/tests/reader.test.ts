import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterEach, describe, expect, it, vi } from "vitest";
import { encodeFrame, MessageReader, type ProtocolViolationError } from "../src/protocol/index.js";

function setup(options: { frameTimeoutMs?: number; maxFrameBytes?: number } = {}) {
  const stream = new PassThrough();
  const messages: unknown[] = [];
  const violations: ProtocolViolationError[] = [];
  const reader = new MessageReader(stream, {
    ...options,
    onMessage: (value) => messages.push(value),
    onViolation: (error) => violations.push(error),
  });
  return { stream, reader, messages, violations };
}

async function tick(): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
}

afterEach(() => {
  vi.useRealTimers();
});

describe("MessageReader", () => {
  it("delivers frames written in pieces and in batches", async () => {
    const { stream, messages, reader } = setup();
    const frames = Array.from({ length: 100 }, (_, i) =>
      encodeFrame({ type: "request", id: `r${i}`, payload: i }),
    );
    const all = Buffer.concat(frames);
    stream.write(all.subarray(0, 3));
    stream.write(all.subarray(3, 1000));
    for (let offset = 1000; offset < all.length; offset += 17)
      stream.write(all.subarray(offset, offset + 17));
    await tick();
    expect(messages).toHaveLength(100);
    expect(messages[99]).toEqual({ type: "request", id: "r99", payload: 99 });
    reader.dispose();
  });

  it("closes on a frame that stalls past the frame timeout (fake timers)", async () => {
    vi.useFakeTimers();
    const { stream, violations, messages } = setup({ frameTimeoutMs: 1000 });
    const frame = encodeFrame({ type: "cancel", id: "x" });
    stream.write(frame.subarray(0, 5));
    await vi.advanceTimersByTimeAsync(999);
    expect(violations).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    // Judged after the next I/O phase (an immediate): nothing arrived in between.
    await vi.advanceTimersByTimeAsync(1);
    expect(violations.map((error) => error.reason)).toEqual(["frame-timeout"]);
    // Stopped: the rest of the frame is ignored.
    stream.write(frame.subarray(5));
    await vi.advanceTimersByTimeAsync(0);
    expect(messages).toHaveLength(0);
  });

  it("does not time out an idle connection, and restarts the deadline for each new frame", async () => {
    vi.useFakeTimers();
    const { stream, violations, messages, reader } = setup({ frameTimeoutMs: 1000 });
    await vi.advanceTimersByTimeAsync(10_000);
    const a = encodeFrame({ type: "cancel", id: "a" });
    const b = encodeFrame({ type: "cancel", id: "b" });
    stream.write(a.subarray(0, 2));
    await vi.advanceTimersByTimeAsync(800);
    // a completes and b begins in one chunk: b gets its own full timeout.
    stream.write(Buffer.concat([a.subarray(2), b.subarray(0, 2)]));
    await vi.advanceTimersByTimeAsync(800);
    expect(violations).toHaveLength(0);
    stream.write(b.subarray(2));
    await vi.advanceTimersByTimeAsync(5000);
    expect(violations).toHaveLength(0);
    expect(messages).toHaveLength(2);
    reader.dispose();
  });

  it("does not count paused time against the peer", async () => {
    vi.useFakeTimers();
    const { stream, violations, reader } = setup({ frameTimeoutMs: 1000 });
    stream.write(encodeFrame({ type: "cancel", id: "a" }).subarray(0, 3));
    await vi.advanceTimersByTimeAsync(500);
    reader.pause();
    await vi.advanceTimersByTimeAsync(5000);
    expect(violations).toHaveLength(0);
    reader.resume();
    await vi.advanceTimersByTimeAsync(999);
    expect(violations).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(2);
    expect(violations.map((error) => error.reason)).toEqual(["frame-timeout"]);
  });

  it("completes a frame that arrived while the event loop was busy past its deadline (a real socket)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "reader-"));
    const path = join(dir, "s.sock");
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(path, resolve));
    const client = connect(path);
    const [peer] = (await once(server, "connection")) as [Socket];
    const messages: unknown[] = [];
    const violations: ProtocolViolationError[] = [];
    const reader = new MessageReader(client, {
      frameTimeoutMs: 500,
      onMessage: (value) => messages.push(value),
      onViolation: (error) => violations.push(error),
    });
    try {
      const frame = encodeFrame({ type: "cancel", id: "late" });
      peer.write(frame.subarray(0, 5));
      while (reader.bufferedBytes === 0) await new Promise((resolve) => setImmediate(resolve));
      // The rest reaches the kernel's buffer, and the loop is blocked past the deadline before it is
      // read: the next turn runs the overdue timer before any I/O, and the frame must still complete.
      setImmediate(() => {
        peer.write(frame.subarray(5));
        const end = performance.now() + 1_500;
        while (performance.now() < end) {
          // busy
        }
      });
      while (messages.length + violations.length === 0)
        await new Promise((resolve) => setTimeout(resolve, 10));
      expect(violations).toHaveLength(0);
      expect(messages).toEqual([{ type: "cancel", id: "late" }]);
    } finally {
      reader.dispose();
      client.destroy();
      peer.destroy();
      server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("stalls with a short real timeout", async () => {
    const { stream, violations } = setup({ frameTimeoutMs: 30 });
    stream.write(Buffer.from([0, 0, 0, 10, 0x7b]));
    await vi.waitFor(() => expect(violations.map((error) => error.reason)).toEqual(["frame-timeout"]));
  });

  it("reports violations from the codec, the JSON and onMessage once, then stops", async () => {
    const stream = new PassThrough();
    const seen: string[] = [];
    new MessageReader(stream, {
      onMessage: (value) => {
        seen.push(JSON.stringify(value));
      },
      onViolation: (error) => seen.push(`violation:${error.reason}`),
    });
    stream.write(
      Buffer.concat([encodeFrame({ ok: 1 }), Buffer.from([0, 0, 0, 1, 0x7b]), encodeFrame({ ok: 2 })]),
    );
    await tick();
    expect(seen).toEqual(['{"ok":1}', "violation:invalid-json"]);
  });

  it("holds back the rest of a chunk when its owner pauses mid-chunk, and delivers it on resume", async () => {
    const stream = new PassThrough();
    const seen: number[] = [];
    const reader: MessageReader = new MessageReader(stream, {
      onMessage: (value) => {
        seen.push((value as { n: number }).n);
        if (seen.length === 2) reader.pause();
      },
      onViolation: () => undefined,
    });
    stream.write(Buffer.concat([1, 2, 3, 4, 5].map((n) => encodeFrame({ n }))));
    await tick();
    expect(seen).toEqual([1, 2]);
    stream.write(encodeFrame({ n: 6 }));
    await tick();
    expect(seen).toEqual([1, 2]);
    reader.resume();
    await tick();
    expect(seen).toEqual([1, 2, 3, 4, 5, 6]);
    reader.dispose();
  });

  it("dispose removes its listeners", () => {
    const { stream, reader } = setup();
    expect(stream.listenerCount("data")).toBe(1);
    reader.dispose();
    expect(stream.listenerCount("data")).toBe(0);
    expect(stream.listenerCount("close")).toBe(0);
  });
});
