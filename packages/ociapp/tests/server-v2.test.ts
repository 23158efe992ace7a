import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  Application,
  type ExecutionContext,
  OciappConnectError,
  type PrimeSample,
  type ServerHandle,
  serve,
} from "../src/index.js";
import { encodeFrame } from "../src/protocol/index.js";
import { boundText, cutText } from "../src/server/invoke.js";
import { app as behaviour } from "./fixtures/behaviour-app.js";
import { hostHello, TestClient, TestHost } from "./helpers/client.js";

// serve() in process: connect mode, and what protocol 2 added to every connection (error stacks and
// escaping, log records and their drops, prime shared by the whole process).

let dir: string;
const handles: ServerHandle[] = [];
const hosts: TestHost[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "ociapp-v2-"));
});

afterEach(async () => {
  await Promise.all(handles.splice(0).map((handle) => handle.close({ graceMs: 0 })));
  for (const host of hosts.splice(0)) host.close();
  rmSync(dir, { recursive: true, force: true });
});

async function listen(app: Application = behaviour): Promise<ServerHandle> {
  const handle = await serve({ app, socketPath: join(dir, `${handles.length}.sock`), log: () => undefined });
  handles.push(handle);
  return handle;
}

const Anything = z.object({ n: z.number().default(0), text: z.string().default("") });
type Anything = z.infer<typeof Anything>;

/** An app whose execute is the test's: each test says what it does. */
function appOf(
  execute: (request: Anything, context: ExecutionContext) => unknown,
  // biome-ignore lint/suspicious/noConfusingVoidType: a hook with no return statement returns void (Promise<void> when async), which undefined would refuse.
  fields: { errorStacks?: boolean; prime?: () => void | PrimeSample | Promise<void | PrimeSample> } = {},
): Application {
  class Custom extends Application<typeof Anything, z.ZodType> {
    readonly request = Anything;
    readonly response = z.unknown();
    override readonly errorStacks = fields.errorStacks;
    execute(request: Anything, context: ExecutionContext) {
      return execute(request, context) as Promise<unknown>;
    }
  }
  const app = new Custom();
  if (fields.prime) Object.defineProperty(app, "prime", { value: fields.prime });
  return app;
}

describe("serve({ connectPath })", () => {
  it("connects, creating nothing in the host's folder, and closes 'disconnected' when the host goes", async () => {
    const host = TestHost.create();
    hosts.push(host);
    await host.listen();
    const handle = await serve({ app: behaviour, connectPath: host.socketPath, log: () => undefined });
    handles.push(handle);
    expect(handle.mode).toBe("connect");
    expect(handle.socketPath).toBe(host.socketPath);
    const client = await host.accept();
    expect(readdirSync(host.dir)).toEqual([]);
    const aborted = client.request("w", { op: "wait-abort" });
    await expect.poll(() => handle.stats().running).toBe(1);
    client.close();
    expect(await handle.closed).toBe("disconnected");
    expect(handle.stats()).toMatchObject({ connections: 0, running: 0, pending: 0 });
    // Nobody was left to answer it.
    expect(client.received).toEqual([]);
    void aborted;
  });

  it("rejects with OciappConnectError once the orphan timeout has passed without a host", async () => {
    const path = join(dir, "host.sock");
    const error = await serve({ app: behaviour, connectPath: path, orphanTimeoutMs: 150 }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(OciappConnectError);
    expect(error).toMatchObject({ code: "OCIAPP_CONNECT", path });
    expect((error as Error).message).toMatch(
      /^no host at .* within 150 ms \(\d+ attempts, last: ENOENT\): exiting$/,
    );
  });

  it("stops trying when its signal aborts, and refuses socketPath with connectPath", async () => {
    const controller = new AbortController();
    const starting = serve({
      app: behaviour,
      connectPath: join(dir, "host.sock"),
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(new Error("enough")), 50);
    await expect(starting).rejects.toThrow("enough");
    await expect(
      serve({ app: behaviour, socketPath: join(dir, "a.sock"), connectPath: join(dir, "b.sock") }),
    ).rejects.toMatchObject({ code: "OCIAPP_INVALID_OPTION" });
  });
});

describe("error frames", () => {
  it("escape control characters other than \\n and \\t in type and message, and carry no stack by default", async () => {
    const handle = await listen(
      appOf(() => {
        const error = new Error("red \u001b[31mtext\r\nnext\tline\u0000\u007f\u0085");
        error.name = "Bad\u0007Name";
        throw error;
      }),
    );
    const client = await TestClient.connect(handle.socketPath);
    expect(await client.request("e", {})).toEqual({
      type: "error",
      id: "e",
      error: {
        type: "Bad\\u0007Name",
        message: "red \\u001b[31mtext\\u000d\nnext\tline\\u0000\\u007f\\u0085",
      },
    });
    client.close();
  });

  it("carry the stack when the app sets errorStacks, bounded to 16 KiB, the message to 8 KiB", async () => {
    const handle = await listen(
      appOf(
        (request) => {
          const error = new Error("m".repeat(request.n));
          if (request.text) error.stack = request.text;
          throw error;
        },
        { errorStacks: true },
      ),
    );
    const client = await TestClient.connect(handle.socketPath);
    expect((await client.hello).capabilities).toContain("stack");
    const plain = await client.request("plain", { n: 3 });
    expect(plain).toMatchObject({
      error: { message: "mmm", stack: expect.stringMatching(/^Error: mmm\n {4}at /) },
    });
    const long = await client.request("long", { n: 10_000, text: `\u001b${"s".repeat(20_000)}` });
    const error = long.type === "error" ? long.error : undefined;
    expect(error?.message).toHaveLength(8192);
    expect(error?.message.endsWith("m…")).toBe(true);
    expect(error?.stack).toHaveLength(16_384);
    expect(error?.stack?.startsWith("\\u001bsss")).toBe(true);
    expect(error?.stack?.endsWith("s…")).toBe(true);
    client.close();
  });

  it("boundText and cutText never cut a surrogate pair and end a cut text in …", () => {
    expect(cutText("ab😀cd", 4)).toBe("ab…");
    expect(cutText("abc😀", 4)).toBe("abc…");
    expect(cutText("abcd", 4)).toBe("abcd");
    expect(boundText("a\u0001b", 20)).toBe("a\\u0001b");
    expect(boundText("\u0001\u0001\u0001", 8)).toBe("\\u0001\\…");
    expect(boundText("x".repeat(10), 10)).toBe("x".repeat(10));
  });
});

describe("log records", () => {
  it("drop log frames while the outbound buffer is over its limit, counting them, and never an answer", async () => {
    const handle = await listen(
      appOf((request) => {
        for (let i = 0; i < request.n; i++) console.log(`${i} ${request.text}`);
        return { lines: request.n };
      }),
    );
    const client = await TestClient.connect(handle.socketPath, { hello: hostHello({ logRecords: true }) });
    // 5,000 lines of 1 KB in one synchronous execute: only about the first MiB fits the buffer.
    const flood = await client.request("flood", { n: 5000, text: "x".repeat(1000) });
    expect(flood).toEqual({ type: "response", id: "flood", payload: { lines: 5000 } });
    const kept = client.logs.filter((log) => log.id === "flood").length;
    expect(kept).toBeGreaterThan(500);
    expect(kept).toBeLessThan(5000);
    await client.request("next", { n: 1, text: "after" });
    const next = client.logs.at(-1);
    expect(next).toMatchObject({
      type: "log",
      level: "info",
      id: "next",
      text: "0 after",
      dropped: 5000 - kept,
    });
    expect(client.logs.slice(0, -1).every((log) => log.dropped === undefined)).toBe(true);
  });

  it("drop a log frame the host's maxFrameBytes cannot take, and say so on the next", async () => {
    const handle = await listen(
      appOf((request) => {
        console.log(request.text);
        console.log("short");
        return {};
      }),
    );
    const client = await TestClient.connect(handle.socketPath, {
      hello: hostHello({ logRecords: true, limits: { maxFrameBytes: 1024, maxDepth: 64, maxValues: 1000 } }),
    });
    await client.request("l", { text: "z".repeat(2000) });
    expect(client.logs).toEqual([{ type: "log", level: "info", id: "l", text: "short", dropped: 1 }]);
    expect(client.violation).toBeUndefined();
  });

  it("tag lines with the request of the connection that asked, and leave other connections' lines alone", async () => {
    const handle = await listen(
      appOf(async (request) => {
        await new Promise((resolve) => setTimeout(resolve, 5));
        console.info(`from ${request.text}`);
        return {};
      }),
    );
    const asking = await TestClient.connect(handle.socketPath, { hello: hostHello({ logRecords: true }) });
    const quiet = await TestClient.connect(handle.socketPath);
    // The quiet connection's line goes to the console's own method (the test's output).
    await Promise.all([asking.request("a", { text: "a" }), quiet.request("q", { text: "q" })]);
    expect(asking.logs).toEqual([{ type: "log", level: "info", id: "a", text: "from a" }]);
    expect(quiet.logs).toEqual([]);
    asking.close();
    quiet.close();
  });
});

describe("ping and prime", () => {
  it("run prime() once for the whole process, however many connections ping at once", async () => {
    let runs = 0;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const handle = await listen(
      appOf(() => ({}), {
        prime: async () => {
          runs++;
          await gate;
        },
      }),
    );
    const clients = await Promise.all([1, 2, 3].map(() => TestClient.connect(handle.socketPath)));
    expect((await clients[0]!.hello).capabilities).toEqual([
      "cancel",
      "ping",
      "prime",
      "prime-request",
      "log",
      "trace",
    ]);
    const pongs = clients.map((client, i) => client.ping(`p${i}`, true));
    // A plain ping does not wait for prime.
    expect(await clients[0]!.ping("plain")).toEqual({ type: "pong", id: "plain" });
    release();
    expect(await Promise.all(pongs)).toEqual([0, 1, 2].map((i) => ({ type: "pong", id: `p${i}` })));
    expect(await clients[1]!.ping("later", true)).toEqual({ type: "pong", id: "later" });
    expect(runs).toBe(1);
    for (const client of clients) client.close();
  });

  it("prime the request path of an app without a prime hook too (listing prime), never running execute", async () => {
    let executes = 0;
    const handle = await listen(appOf(() => ({ n: ++executes })));
    const client = await TestClient.connect(handle.socketPath);
    expect((await client.hello).capabilities).toEqual([
      "cancel",
      "ping",
      "prime",
      "prime-request",
      "log",
      "trace",
    ]);
    expect(await client.ping("p", true)).toEqual({ type: "pong", id: "p" });
    // The in-process run left nothing behind: no request pending, no slot held, no execute.
    expect(handle.stats()).toMatchObject({ connections: 1, pending: 0, running: 0, queued: 0 });
    expect(executes).toBe(0);
    expect(await client.request("r", {})).toMatchObject({ type: "response", payload: { n: 1 } });
    client.close();
  });

  it("run the prime ping's path on the prime() hook's sample: both schemas, never execute", async () => {
    let executes = 0;
    let requestChecks = 0;
    let responseChecks = 0;
    const Checked = z.object({ n: z.number() }).refine(() => ++requestChecks > 0);
    const Answer = z.object({ n: z.number() }).refine(() => ++responseChecks > 0);
    class Sampled extends Application<typeof Checked, typeof Answer> {
      readonly request = Checked;
      readonly response = Answer;
      override prime() {
        return { request: { n: 1 }, response: { n: 2 } };
      }
      execute() {
        return { n: ++executes };
      }
    }
    const handle = await listen(new Sampled());
    const client = await TestClient.connect(handle.socketPath);
    expect(await client.ping("p", true)).toEqual({ type: "pong", id: "p" });
    expect(executes).toBe(0);
    expect(requestChecks).toBeGreaterThan(1);
    expect(responseChecks).toBe(requestChecks);
    expect(handle.stats()).toMatchObject({ pending: 0, running: 0 });
    client.close();
  });
});

describe("prime requests", () => {
  it("prime with a sample the schemas refuse, or too large for the limits: the ping still pongs", async () => {
    const Small = z.object({ text: z.string().max(4) });
    class Refused extends Application<typeof Small, typeof Small> {
      readonly request = Small;
      readonly response = Small;
      override prime() {
        return { request: { text: "x".repeat(5_000) }, response: { text: "ok" } };
      }
      execute() {
        return { text: "no" };
      }
    }
    const handle = await serve({
      app: new Refused(),
      socketPath: join(dir, "refused.sock"),
      maxFrameBytes: 1024,
      log: () => undefined,
    });
    handles.push(handle);
    const client = await TestClient.connect(handle.socketPath);
    expect(await client.ping("p", true)).toEqual({ type: "pong", id: "p" });
    expect(handle.stats()).toMatchObject({ pending: 0, running: 0 });
    const answer = client.answer("q1");
    client.write(encodeFrame({ type: "prime", id: "q1" }));
    expect(await answer).toMatchObject({ type: "error", id: "q1", error: { type: "ValidationError" } });
    client.close();
  });

  it("answer with the sample's response after both schemas, taking the request's path but never execute", async () => {
    let executes = 0;
    const Doubled = z.object({ n: z.number() }).transform(({ n }) => ({ n: n * 2 }));
    class Sampled extends Application<typeof Doubled, typeof Doubled> {
      readonly request = Doubled;
      readonly response = Doubled;
      override prime() {
        return { request: { n: 1 }, response: { n: 5 } };
      }
      execute() {
        return { n: ++executes };
      }
    }
    const handle = await listen(new Sampled());
    const client = await TestClient.connect(handle.socketPath);
    await client.ping("p", true);
    const answer = client.answer("q1");
    client.write(encodeFrame({ type: "prime", id: "q1" }));
    expect(await answer).toEqual({ type: "response", id: "q1", payload: { n: 10 } });
    expect(executes).toBe(0);
    expect(await client.request("r", { n: 3 })).toEqual({ type: "response", id: "r", payload: { n: 2 } });
    expect(executes).toBe(1);
    client.close();
  });

  it("answer null without a sample (no prime hook, or one before the prime ping), never running execute", async () => {
    let executes = 0;
    const handle = await listen(appOf(() => ({ n: ++executes })));
    const client = await TestClient.connect(handle.socketPath);
    const answers = [client.answer("q1"), client.answer("q2")];
    client.write(encodeFrame({ type: "prime", id: "q1" }));
    client.write(encodeFrame({ type: "prime", id: "q2" }));
    expect(await Promise.all(answers)).toEqual([
      { type: "response", id: "q1", payload: null },
      { type: "response", id: "q2", payload: null },
    ]);
    expect(executes).toBe(0);
    expect(handle.stats()).toMatchObject({ pending: 0, running: 0 });
    client.close();
  });
});
