import { spawnSync } from "node:child_process";
import { readdirSync, renameSync } from "node:fs";
import { createServer } from "node:net";
import { afterAll, describe, it } from "vitest";
import { VERSION } from "../src/index.js";
import { encodeFrame } from "../src/protocol/index.js";
import { hostHello, TestHost } from "./helpers/client.js";
import { BEHAVIOUR_APP, killAll, startCli } from "./helpers/server-process.js";

// `ociapp serve --connect` as a runtime runs it: the host listens on host.sock in a folder of its own,
// the CLI (a child process, from the TypeScript sources) connects, and that one connection is its life.

const hosts: TestHost[] = [];

async function listeningHost(): Promise<TestHost> {
  const host = TestHost.create();
  hosts.push(host);
  await host.listen();
  return host;
}

afterAll(async () => {
  await killAll();
  for (const host of hosts) host.close();
});

/** expect.poll's default of 1 s is too short for a process start on a loaded machine. */
const PATIENT = { timeout: 20_000 };

const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/** true when this machine lets us make a mount namespace with a read-only bind mount (root, CAP_SYS_ADMIN). */
const canMountReadOnly = spawnSync("unshare", ["--mount", "true"]).status === 0;

describe.concurrent("ociapp serve --connect (child process)", () => {
  it("says hello both ways, serves, and exits 0 once the host closes, aborting what was in flight", async ({
    expect,
  }) => {
    const host = await listeningHost();
    const server = await startCli(["--app", BEHAVIOUR_APP, "--max-depth", "16"], {
      connect: host.socketPath,
    });
    const client = await host.accept();
    expect(await client.hello).toEqual({
      type: "hello",
      protocol: 2,
      role: "app",
      maxConcurrency: 64,
      limits: { maxFrameBytes: 16 * 1024 * 1024, maxDepth: 16, maxValues: 100_000 },
      capabilities: ["cancel", "ping", "prime", "prime-request", "log", "trace"],
      app: { name: "behaviour", version: "1.2.3" },
      sdk: { name: "ociapp", version: VERSION },
    });
    expect(server.stderr()).toContain(`serving ${BEHAVIOUR_APP} connected to ${host.socketPath}`);
    expect(await client.request("1", { op: "echo", value: "over the host's socket" })).toEqual({
      type: "response",
      id: "1",
      payload: { value: "over the host's socket" },
    });
    // The app made nothing in the host's folder (the host's own socket file went when it accepted).
    expect(readdirSync(host.dir)).toEqual([]);
    client.write(encodeFrame({ type: "request", id: "in-flight", payload: { op: "wait-abort-report" } }));
    await client.request("sync", { op: "echo" });
    client.close();
    expect(await server.exited).toEqual({ code: 0, signal: null });
    expect(server.stdout()).toContain("aborted in-flight: the host connection closed");
    expect(server.stderr()).toContain("stopped: the host closed the connection");
  });

  it("keeps what it sends within the host's limits, and what it receives within its own", async ({
    expect,
  }) => {
    const host = await listeningHost();
    const server = await startCli(["--app", BEHAVIOUR_APP, "--max-depth", "16", "--max-values", "200"], {
      connect: host.socketPath,
    });
    // The host's reader enforces the limits its hello announces: a frame past them would be a violation.
    const client = await host.accept({
      hello: hostHello({ limits: { maxFrameBytes: 2048, maxDepth: 8, maxValues: 100 } }),
    });
    const [deep, many, big, fits] = await Promise.all([
      client.request("deep", { op: "deep", ms: 10 }),
      client.request("many", { op: "many", ms: 200 }),
      client.request("big", { op: "big", ms: 5000 }),
      client.request("fits", { op: "deep", ms: 5 }),
    ]);
    const tooLarge = (limit: string) => ({
      type: "error",
      error: { type: "ResponseTooLarge", message: expect.stringContaining(`(${limit})`) },
    });
    expect(deep).toMatchObject(tooLarge("maxDepth"));
    expect(many).toMatchObject(tooLarge("maxValues"));
    expect(big).toMatchObject(tooLarge("maxFrameBytes"));
    expect(fits).toMatchObject({ type: "response", payload: { data: [[[[[0]]]]] } });
    expect(client.violation).toBeUndefined();
    // A request past the app's own maxValues (200) is a violation: the connection, and so the app, ends.
    client.write(encodeFrame({ type: "request", id: "wide", payload: Array(300).fill(0) }));
    await client.closed;
    expect(await server.exited).toEqual({ code: 0, signal: null });
    expect(server.stderr()).toContain("protocol violation (too-many-values)");
  });

  it("answers ping with pong, without a concurrency slot; a prime ping runs prime() once per process", async ({
    expect,
  }) => {
    const host = await listeningHost();
    const server = await startCli(["--app", BEHAVIOUR_APP, "--max-concurrency", "1"], {
      connect: host.socketPath,
    });
    const client = await host.accept();
    const blocker = client.request("blocker", { op: "wait-abort" });
    expect(await client.ping("p1")).toEqual({ type: "pong", id: "p1" });
    client.cancel("blocker");
    await blocker;
    expect(await client.request("before", { op: "primed" })).toMatchObject({ payload: { value: "0" } });
    const [first, second] = await Promise.all([client.ping("p2", true), client.ping("p3", true)]);
    expect([first, second]).toEqual([
      { type: "pong", id: "p2" },
      { type: "pong", id: "p3" },
    ]);
    expect(await client.ping("p4", true)).toEqual({ type: "pong", id: "p4" });
    expect(await client.request("after", { op: "primed" })).toMatchObject({ payload: { value: "1" } });
    // prime() runs outside any execute: its console line goes to stdout.
    expect(server.stdout()).toContain("priming the behaviour app");
    client.close();
    expect(await server.exited).toEqual({ code: 0, signal: null });
  });

  it("answers a prime ping whose hook throws with PrimeError (its stack, escaped, when errorStacks is on)", async ({
    expect,
  }) => {
    const host = await listeningHost();
    const server = await startCli(["--app", `${BEHAVIOUR_APP}#failingPrime`], { connect: host.socketPath });
    const client = await host.accept();
    expect((await client.hello).capabilities).toEqual([
      "cancel",
      "ping",
      "prime",
      "prime-request",
      "log",
      "trace",
      "stack",
    ]);
    const failed = await client.ping("p", true);
    expect(failed).toMatchObject({
      type: "error",
      id: "p",
      error: { type: "PrimeError", message: "prime() failed: TypeError: cold\\u001b[31m start" },
    });
    const stack = failed.type === "error" ? (failed.error.stack ?? "") : "";
    expect(stack).toMatch(/^TypeError: cold\\u001b\[31m start\n {4}at /);
    // It keeps serving, and a later prime ping does not run the hook again.
    expect(await client.ping("again", true)).toEqual({ type: "pong", id: "again" });
    const thrown = await client.request("t", { op: "throw", value: "x" });
    expect(thrown).toMatchObject({
      type: "error",
      error: { type: "TeapotError", stack: expect.any(String) },
    });
    client.close();
    expect(await server.exited).toEqual({ code: 0, signal: null });
  });

  it("hands a request's trace context to execute, dropping a malformed one", async ({ expect }) => {
    const host = await listeningHost();
    const server = await startCli(["--app", BEHAVIOUR_APP], { connect: host.socketPath });
    const client = await host.accept();
    const trace = { traceparent: TRACEPARENT, tracestate: "congo=t61rcWkgMzE" };
    expect(await client.request("t1", { op: "trace" }, { trace })).toMatchObject({
      payload: { data: trace },
    });
    expect(await client.request("t2", { op: "trace" }, { trace: { traceparent: "00-nope" } })).toMatchObject({
      payload: { data: null },
    });
    expect(await client.request("t3", { op: "trace" })).toMatchObject({ payload: { data: null } });
    client.close();
    expect(await server.exited).toEqual({ code: 0, signal: null });
  });

  it("sends console lines written during execute as log frames tagged with the request id, when asked", async ({
    expect,
  }) => {
    const host = await listeningHost();
    const server = await startCli(["--app", BEHAVIOUR_APP], { connect: host.socketPath });
    const client = await host.accept({ hello: hostHello({ logRecords: true }) });
    // Two at once: each line is tagged with its own request, across the await in between.
    const answers = await Promise.all([
      client.request("r1", { op: "log", value: "r1", ms: 10_000 }),
      client.request("r2", { op: "log", value: "r2" }),
    ]);
    expect(answers.map((answer) => answer.type)).toEqual(["response", "response"]);
    const of = (id: string) =>
      client.logs.filter((log) => log.id === id).map(({ level, text }) => [level, text]);
    expect(of("r1")).toEqual([
      ["info", "line from r1"],
      ["info", "info { n: 1 }"],
      ["warn", "a warning"],
      ["error", "an error"],
      ["debug", "debugging"],
      ["info", `${"y".repeat(8191)}…`],
      ["info", "after an await in r1"],
    ]);
    expect(of("r2")).toContainEqual(["info", "after an await in r2"]);
    expect(client.logs).toHaveLength(14);
    // A line written once the request has its answer, and prime()'s line, go to stdout.
    await client.ping("prime", true);
    await expect.poll(() => server.stdout(), PATIENT).toContain("late line from r1");
    expect(server.stdout()).toContain("priming the behaviour app");
    expect(server.stdout()).not.toMatch(/^line from r2$/m);
    client.close();
    expect(await server.exited).toEqual({ code: 0, signal: null });
  });

  it("leaves console output on stdout and stderr when the host did not ask for log records", async ({
    expect,
  }) => {
    const host = await listeningHost();
    const server = await startCli(["--app", BEHAVIOUR_APP], { connect: host.socketPath });
    const client = await host.accept();
    expect(await client.request("r", { op: "log", value: "plain" })).toMatchObject({ type: "response" });
    expect(client.logs).toEqual([]);
    await expect.poll(() => server.stdout(), PATIENT).toContain("line from plain\n");
    await expect.poll(() => server.stderr(), PATIENT).toContain("a warning\n");
    client.close();
    expect(await server.exited).toEqual({ code: 0, signal: null });
  });

  it("retries while the host's socket is missing, and connects once it listens", async ({ expect }) => {
    const host = TestHost.create();
    hosts.push(host);
    const server = await startCli(["--app", BEHAVIOUR_APP, "--orphan-timeout", "20000"], {
      connect: host.socketPath,
      waitForListening: false,
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    await host.listen();
    const client = await host.accept();
    expect(await client.request("1", { op: "echo", value: "late host" })).toMatchObject({ type: "response" });
    client.close();
    expect(await server.exited).toEqual({ code: 0, signal: null });
  });

  it("exits 3 with one line when no host accepts within the orphan timeout (missing, then refusing)", async ({
    expect,
  }) => {
    const host = TestHost.create();
    hosts.push(host);
    const missing = await startCli(["--app", BEHAVIOUR_APP, "--orphan-timeout", "300"], {
      connect: host.socketPath,
      waitForListening: false,
    });
    expect((await missing.exited).code).toBe(3);
    expect(missing.stderr()).toMatch(
      /^ociapp: no host at \S+host\.sock within 300 ms \(\d+ attempts, last: ENOENT\): exiting\n$/,
    );
    // A socket file nobody listens on (its host died): ECONNREFUSED, retried the same way.
    const stale = createServer();
    await new Promise<void>((resolve) => stale.listen(host.socketPath, resolve));
    renameSync(host.socketPath, `${host.socketPath}.moved`);
    await new Promise<void>((resolve) => stale.close(() => resolve()));
    renameSync(`${host.socketPath}.moved`, host.socketPath);
    const refused = await startCli(["--app", BEHAVIOUR_APP], {
      connect: host.socketPath,
      waitForListening: false,
      env: { OCIAPP_ORPHAN_TIMEOUT_MS: "300" },
    });
    expect((await refused.exited).code).toBe(3);
    expect(refused.stderr()).toMatch(/within 300 ms \(\d+ attempts, last: ECONNREFUSED\): exiting\n$/);
  });

  it.skipIf(!canMountReadOnly)(
    "works with its socket folder mounted read-only, as the runtime mounts it",
    async ({ expect }) => {
      const host = await listeningHost();
      const readOnly = [
        "unshare",
        "--mount",
        "sh",
        "-c",
        `mount --bind -o ro ${host.dir} ${host.dir} && exec "$@"`,
        "sh",
      ];
      // The mount really is read-only for a process under the same wrapper.
      expect(spawnSync(readOnly[0]!, [...readOnly.slice(1), "touch", `${host.dir}/probe`]).status).not.toBe(
        0,
      );
      const server = await startCli(["--app", BEHAVIOUR_APP], {
        connect: host.socketPath,
        wrapper: readOnly,
        env: { OCIAPP_CONNECT: host.socketPath },
      });
      const client = await host.accept();
      expect(await client.request("ro", { op: "echo", value: "read-only" })).toMatchObject({
        payload: { value: "read-only" },
      });
      expect(readdirSync(host.dir)).toEqual([]);
      client.close();
      expect(await server.exited).toEqual({ code: 0, signal: null });
    },
  );

  it("refuses --socket with --connect (from flags or the environment) in one line, exit 1", async ({
    expect,
  }) => {
    const both = await startCli(
      ["--app", BEHAVIOUR_APP, "--socket", "/tmp/x.sock", "--connect", "/tmp/y.sock"],
      {
        noSocket: true,
        waitForListening: false,
      },
    );
    expect((await both.exited).code).toBe(1);
    expect(both.stderr()).toBe(
      "ociapp: --socket (listen mode) and --connect (connect mode) exclude each other, from flags or OCIAPP_SOCKET / OCIAPP_CONNECT: give one\n",
    );
    const mixed = await startCli(["--app", BEHAVIOUR_APP, "--socket", "/tmp/x.sock"], {
      noSocket: true,
      waitForListening: false,
      env: { OCIAPP_CONNECT: "/tmp/y.sock" },
    });
    expect((await mixed.exited).code).toBe(1);
    expect(mixed.stderr().trim().split("\n")).toHaveLength(1);
  });

  it("stops with 0 on SIGTERM while it waits for its host, and drains on SIGTERM once connected", async ({
    expect,
  }) => {
    const nobody = TestHost.create();
    hosts.push(nobody);
    const waiting = await startCli(["--app", BEHAVIOUR_APP], {
      connect: nobody.socketPath,
      waitForListening: false,
    });
    // Once the app has loaded, the CLI owns the signals (it may still be checking the app, or retrying).
    await expect.poll(() => waiting.stdout(), PATIENT).toContain("behaviour app loaded");
    waiting.child.kill("SIGTERM");
    expect(await waiting.exited).toEqual({ code: 0, signal: null });
    expect(waiting.stderr()).toMatch(/^ociapp: SIGTERM: stopped before serving\n$/);

    const host = await listeningHost();
    const server = await startCli(["--app", BEHAVIOUR_APP, "--shutdown-grace", "300"], {
      connect: host.socketPath,
    });
    const client = await host.accept();
    const held = client.request("held", { op: "wait-abort" });
    await client.request("sync", { op: "echo" });
    server.child.kill("SIGTERM");
    await expect
      .poll(() => server.stderr(), PATIENT)
      .toContain("SIGTERM: draining 1 request(s), grace 300 ms");
    expect(await client.request("late", { op: "echo" })).toMatchObject({ error: { type: "ShuttingDown" } });
    expect(await held).toMatchObject({ error: { type: "Cancelled" } });
    expect(await server.exited).toEqual({ code: 0, signal: null });
  });
});
