import { mkdtempSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  Application,
  type ExecutionContext,
  isApplication,
  OciappError,
  OciappUsageError,
  PROTOCOL_VERSION,
  type ServerHandle,
  serve,
  VERSION,
} from "../src/index.js";
import { encodeFrame } from "../src/protocol/index.js";
import { app as behaviour } from "./fixtures/behaviour-app.js";
import { hostHello, TestClient } from "./helpers/client.js";

let dir: string;
const handles: ServerHandle[] = [];
const logs: string[] = [];

async function start(options: Partial<Parameters<typeof serve>[0]> = {}): Promise<ServerHandle> {
  const handle = await serve({
    app: behaviour,
    socketPath: join(dir, "app.sock"),
    log: (l) => logs.push(l),
    ...options,
  });
  handles.push(handle);
  return handle;
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "ociapp-server-"));
  logs.length = 0;
});

afterEach(async () => {
  await Promise.all(handles.splice(0).map((handle) => handle.close({ graceMs: 0 })));
  rmSync(dir, { recursive: true, force: true });
});

describe("Application", () => {
  const Schema = z.object({ n: z.number() });
  class Doubler extends Application<typeof Schema, typeof Schema> {
    readonly request = Schema;
    readonly response = Schema;
    execute(request: z.infer<typeof Schema>, _context: ExecutionContext) {
      return { n: request.n * 2 };
    }
  }

  it("is recognised by its Symbol.for brand, so other copies of the SDK agree", () => {
    const app = new Doubler();
    expect(isApplication(app)).toBe(true);
    expect(app instanceof Application).toBe(true);
    expect((app as unknown as Record<symbol, unknown>)[Symbol.for("dev.ociapp.application")]).toBe(true);
    // An object branded by another copy of the SDK passes both checks ...
    const foreign = Object.create({ [Symbol.for("dev.ociapp.application")]: true });
    expect(isApplication(foreign)).toBe(true);
    expect(foreign instanceof Application).toBe(true);
    // ... while subclasses keep the ordinary instanceof.
    expect(foreign instanceof Doubler).toBe(false);
    expect(isApplication({})).toBe(false);
    expect(isApplication(null)).toBe(false);
  });

  it("reports the version in package.json, which declares the protocol it speaks for ociapp-build", () => {
    const manifest = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
      version: string;
      ociapp: { protocol: number };
    };
    expect(VERSION).toBe(manifest.version);
    expect(manifest.ociapp).toEqual({ protocol: PROTOCOL_VERSION, bundledEntry: 1 });
  });

  it("refuses to serve something that is not an Application", async () => {
    await expect(serve({ app: {} as never, socketPath: join(dir, "x.sock") })).rejects.toMatchObject({
      code: "OCIAPP_NOT_AN_APPLICATION",
    });
  });
});

describe("serve()", () => {
  it("publishes a 0666 socket and removes it on close", async () => {
    const handle = await start();
    expect(statSync(handle.socketPath).mode & 0o777).toBe(0o666);
    expect(statSync(handle.socketPath).isSocket()).toBe(true);
    await handle.close();
    expect(() => statSync(handle.socketPath)).toThrow(/ENOENT/);
    expect(await handle.closed).toBe("closed");
  });

  it("refuses a socket a live server listens on, and replaces a stale one", async () => {
    const path = join(dir, "app.sock");
    const other = createServer();
    await new Promise<void>((resolve) => other.listen(path, resolve));
    expect((await expectTaken(path)).code).toBe("OCIAPP_SOCKET_IN_USE");
    // Leave a stale socket file behind, as a crashed server does: move the live one's file aside
    // (its close then removes nothing), close it, and put the dead file back in place.
    renameSync(path, `${path}.moved`);
    await new Promise<void>((resolve) => other.close(() => resolve()));
    renameSync(`${path}.moved`, path);
    expect(statSync(path).isSocket()).toBe(true);
    const handle = await start({ socketPath: path });
    const client = await TestClient.connect(handle.socketPath);
    expect(await client.request("1", { op: "echo", value: "fresh" })).toMatchObject({ type: "response" });
    client.close();
  });

  async function expectTaken(path: string): Promise<OciappError> {
    try {
      await serve({ app: behaviour, socketPath: path });
    } catch (error) {
      expect(error).toBeInstanceOf(OciappError);
      return error as OciappError;
    }
    throw new Error("expected serve() to refuse the socket");
  }

  it("reports a socket path it cannot use as one error, and logs nothing besides", async () => {
    const error = await start({ socketPath: "/proc/nope/app.sock" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OciappUsageError);
    expect(error).toMatchObject({ code: "OCIAPP_SOCKET_PATH" });
    expect((error as Error).message).toMatch(/^cannot use socket path \/proc\/nope\/app.sock: .*ENOENT/);
    // The folder exists but refuses a socket, even to root: listen itself fails (EACCES).
    await expect(start({ socketPath: "/proc/self/app.sock" })).rejects.toMatchObject({
      code: "OCIAPP_SOCKET_BIND",
      message: expect.stringMatching(/^cannot listen on \/proc\/self\/app.sock: .*EACCES/),
    });
    expect(logs).toEqual([]);
  });

  it("validates its options, naming the option and the value", async () => {
    await expect(start({ maxConcurrency: 0 })).rejects.toThrow(
      "maxConcurrency must be an integer from 1 to 1000000, got 0",
    );
    await expect(start({ maxFrameBytes: 10 })).rejects.toThrow(/maxFrameBytes must be .* got 10/);
    await expect(start({ orphanTimeoutMs: -1 })).rejects.toThrow(/orphanTimeoutMs .* got -1/);
  });

  it("caps executes in flight and starts waiting requests in arrival order", async () => {
    const handle = await start({ maxConcurrency: 2 });
    const client = await TestClient.connect(handle.socketPath);
    const order: string[] = [];
    const track = (id: string, payload: unknown) =>
      client.request(id, payload).then((message) => {
        order.push(id);
        return message;
      });
    const blockers = [track("a", { op: "wait-abort" }), track("b", { op: "wait-abort" })];
    const waiting = ["c", "d", "e"].map((id) => track(id, { op: "echo", value: id }));
    await expect.poll(() => handle.stats()).toMatchObject({ running: 2, queued: 3 });
    client.cancel("a");
    await Promise.all(waiting);
    // One slot freed: c, d and e ran one after another, in arrival order.
    expect(order).toEqual(["a", "c", "d", "e"]);
    client.cancel("b");
    await Promise.all(blockers);
    client.close();
  });

  it("cancelling a queued request answers it at once without running it", async () => {
    const handle = await start({ maxConcurrency: 1 });
    const client = await TestClient.connect(handle.socketPath);
    const blocker = client.request("blocker", { op: "wait-abort" });
    const queued = client.request("queued", { op: "echo", value: "never" });
    await expect.poll(() => handle.stats().queued).toBe(1);
    client.cancel("queued");
    expect(await queued).toMatchObject({ type: "error", error: { type: "Cancelled" } });
    expect(handle.stats()).toMatchObject({ queued: 0, running: 1 });
    client.cancel("blocker");
    expect(await blocker).toMatchObject({ type: "error", error: { type: "Cancelled" } });
    client.close();
  });

  it("aborts the work of a client that disconnects", async () => {
    const handle = await start();
    const client = await TestClient.connect(handle.socketPath);
    client.write(encodeFrame({ type: "request", id: "w", payload: { op: "wait-abort" } }));
    await expect.poll(() => handle.stats().running).toBe(1);
    client.close();
    await expect.poll(() => handle.stats()).toMatchObject({ running: 0, pending: 0, connections: 0 });
  });

  it("treats a client that ends its side as gone: its work is aborted", async () => {
    const handle = await start();
    const client = await TestClient.connect(handle.socketPath);
    client.write(encodeFrame({ type: "request", id: "h", payload: { op: "wait-abort" } }));
    await expect.poll(() => handle.stats().running).toBe(1);
    client.socket.end();
    await client.closed;
    await expect.poll(() => handle.stats()).toMatchObject({ running: 0, pending: 0, connections: 0 });
  });

  it("stops reading from a client that does not read its answers, and catches up when it does", async () => {
    const handle = await start({ maxConcurrency: 8 });
    const client = await TestClient.connect(handle.socketPath);
    client.socket.pause();
    const count = 1000;
    const responseBytes = 100_000;
    const answers: Promise<unknown>[] = [];
    const frames: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      answers.push(client.answer(String(i)));
      frames.push(encodeFrame({ type: "request", id: String(i), payload: { op: "big", ms: responseBytes } }));
    }
    client.write(Buffer.concat(frames));
    // Everything read so far is answered, and the server waits for the client instead of reading on.
    await expect
      .poll(() => handle.stats(), { timeout: 10_000 })
      .toMatchObject({ pending: 0, pausedConnections: 1 });
    const { outboundBytes } = handle.stats();
    // Bounded by the outbound limit plus the answers to requests already accepted, far below 300 MB.
    expect(outboundBytes).toBeLessThan(1024 * 1024 + 256 * (responseBytes + 100));
    client.socket.resume();
    await Promise.all(answers);
    expect(client.received).toHaveLength(count);
    client.close();
  });

  it("creates the context signal lazily, already aborted when read after a cancel", async () => {
    const Schema = z.object({});
    let seen: AbortSignal | undefined;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    class Late extends Application<typeof Schema, typeof Schema> {
      readonly request = Schema;
      readonly response = Schema;
      async execute(_request: object, context: ExecutionContext) {
        await gate;
        seen = context.signal;
        return {};
      }
    }
    const handle = await start({ app: new Late() });
    const client = await TestClient.connect(handle.socketPath);
    const answer = client.request("l", {});
    await expect.poll(() => handle.stats().running).toBe(1);
    client.cancel("l");
    // Frames are handled in order: once this invalid request is answered, the cancel has been seen.
    expect(await client.request("sync", null)).toMatchObject({ error: { type: "ValidationError" } });
    release();
    expect(await answer).toMatchObject({
      error: { type: "Cancelled", message: "request cancelled by the host" },
    });
    expect(seen).toBeDefined();
    expect(seen!.aborted).toBe(true);
    expect((seen!.reason as Error).name).toBe("AbortError");
    client.close();
  });

  it("answers null for a response schema whose output is undefined", async () => {
    const Request = z.object({});
    const Response = z.void();
    class Fire extends Application<typeof Request, typeof Response> {
      readonly request = Request;
      readonly response = Response;
      async execute() {}
    }
    const handle = await start({ app: new Fire() });
    const client = await TestClient.connect(handle.socketPath);
    expect(await client.request("v", {})).toEqual({ type: "response", id: "v", payload: null });
    client.close();
  });

  it("parses with schemas that turn out to be async, every time after the first", async () => {
    const Request = z.object({ value: z.string() }).refine(async (r) => r.value !== "bad", "bad value");
    const Response = z.object({ value: z.string() }).transform(async (r) => ({ value: `${r.value}!` }));
    class AsyncSchemas extends Application<typeof Request, typeof Response> {
      readonly request = Request;
      readonly response = Response;
      execute(request: { value: string }) {
        return { value: request.value };
      }
    }
    const handle = await start({ app: new AsyncSchemas() });
    const client = await TestClient.connect(handle.socketPath);
    for (const id of ["1", "2", "3"]) {
      expect(await client.request(id, { value: id })).toEqual({
        type: "response",
        id,
        payload: { value: `${id}!` },
      });
    }
    expect(await client.request("b", { value: "bad" })).toMatchObject({
      error: { type: "ValidationError", message: expect.stringContaining("bad value") },
    });
    client.close();
  });

  it("runs synchronous executes, and a long queue of them, without recursing", async () => {
    const Request = z.object({ n: z.number(), hold: z.boolean().optional() });
    const Response = z.object({ n: z.number() });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    class Sync extends Application<typeof Request, typeof Response> {
      readonly request = Request;
      readonly response = Response;
      execute(request: { n: number; hold?: boolean }) {
        if (request.n < 0) throw new RangeError("negative");
        // Only the first request is async: it holds the one slot while the rest queue up behind it.
        return request.hold ? gate.then(() => ({ n: request.n })) : { n: request.n };
      }
    }
    const handle = await start({ app: new Sync(), maxConcurrency: 1 });
    const first = await TestClient.connect(handle.socketPath);
    expect(await first.request("neg", { n: -1 })).toMatchObject({
      error: { type: "RangeError", message: "negative" },
    });
    const held = first.request("held", { n: 0, hold: true });
    await expect.poll(() => handle.stats().running).toBe(1);
    // Each connection may hold 256 pending requests: 20 connections queue 4,000 synchronous executes.
    const clients = await Promise.all(
      Array.from({ length: 20 }, () => TestClient.connect(handle.socketPath)),
    );
    const answers = clients.flatMap((client, c) =>
      Array.from({ length: 200 }, (_, i) => client.request(`${c}-${i}`, { n: c * 1000 + i })),
    );
    await expect.poll(() => handle.stats().queued, { timeout: 10_000 }).toBe(4000);
    release();
    expect(await held).toMatchObject({ type: "response", payload: { n: 0 } });
    const results = await Promise.all(answers);
    expect(results.every((message) => message.type === "response")).toBe(true);
    expect(results.map((message) => (message as { payload: { n: number } }).payload.n)).toEqual(
      clients.flatMap((_, c) => Array.from({ length: 200 }, (_, i) => c * 1000 + i)),
    );
    expect(handle.stats()).toMatchObject({ running: 0, queued: 0, pending: 0 });
    first.close();
    for (const client of clients) client.close();
  });

  it("encodes answers of mixed sizes in one tick intact, and a small but over-the-host's-limit one as ResponseTooLarge", async () => {
    const Echo = z.object({ value: z.string() });
    class Echoes extends Application<typeof Echo, typeof Echo> {
      readonly request = Echo;
      readonly response = Echo;
      execute(request: { value: string }) {
        return request;
      }
    }
    const handle = await start({ app: new Echoes(), maxFrameBytes: 4096 });
    const client = await TestClient.connect(handle.socketPath);
    // Sent in one write, answered in one tick: small answers share batch buffers (16 KiB each),
    // larger ones travel as frames of their own, all in order and byte for byte.
    const values = Array.from({ length: 300 }, (_, i) => (i % 3 === 0 ? "é" : "x").repeat((i * 37) % 1500));
    const answers = values.map((_, i) => client.answer(String(i)));
    client.write(
      Buffer.concat(
        values.map((value, i) => encodeFrame({ type: "request", id: String(i), payload: { value } })),
      ),
    );
    const results = await Promise.all(answers);
    for (const [i, message] of results.entries()) {
      expect(message).toEqual({ type: "response", id: String(i), payload: { value: values[i] } });
    }
    // Answers twice its request: 490 "€" are few enough characters for the batch (about 520 of
    // JSON), but 1,470 bytes of UTF-8 are over the limit of 1,024.
    class Doubles extends Echoes {
      override execute(request: { value: string }) {
        return { value: request.value.repeat(2) };
      }
    }
    const small = await start({ app: new Doubles(), socketPath: join(dir, "b.sock") });
    const second = await TestClient.connect(small.socketPath, {
      hello: hostHello({ limits: { maxFrameBytes: 1024, maxDepth: 64, maxValues: 1000 } }),
    });
    expect(await second.request("big", { value: "€".repeat(245) })).toMatchObject({
      type: "error",
      error: { type: "ResponseTooLarge" },
    });
    expect(await second.request("ok", { value: "€".repeat(100) })).toMatchObject({
      type: "response",
      payload: { value: "€".repeat(200) },
    });
    client.close();
    second.close();
  });

  it("a second close() with a shorter grace cuts the wait short", async () => {
    const handle = await start({ shutdownGraceMs: 600_000 });
    const client = await TestClient.connect(handle.socketPath);
    const hanging = client.request("hang", { op: "hang" });
    await expect.poll(() => handle.stats().running).toBe(1);
    const first = handle.close();
    const second = handle.close({ graceMs: 0 });
    expect(second).toBe(first);
    await first;
    expect(await hanging).toMatchObject({ type: "error", error: { type: "Cancelled" } });
    expect(await handle.closed).toBe("closed");
  });

  it("closes when its signal aborts, and refuses an aborted signal up front", async () => {
    const controller = new AbortController();
    const handle = await start({ signal: controller.signal });
    controller.abort();
    expect(await handle.closed).toBe("closed");
    await expect(start({ signal: AbortSignal.abort(new Error("no")) })).rejects.toThrow("no");
  });

  it("closes on asyncDispose", async () => {
    const handle = await start();
    await handle[Symbol.asyncDispose]();
    expect(await handle.closed).toBe("closed");
  });

  it("the orphan timeout closes the server with reason orphaned", async () => {
    const handle = await start({ orphanTimeoutMs: 50 });
    expect(await handle.closed).toBe("orphaned");
  });
});
