import { existsSync } from "node:fs";
import { afterAll, describe, it } from "vitest";
import { TestClient } from "./helpers/client.js";
import { BEHAVIOUR_APP, killAll, startCli } from "./helpers/server-process.js";

afterAll(killAll);

describe.concurrent("ociapp serve shutdown (child process)", () => {
  it("SIGTERM drains in-flight requests, refuses new ones with ShuttingDown, and exits 0", async ({
    expect,
  }) => {
    const server = await startCli(["--app", BEHAVIOUR_APP, "--shutdown-grace", "10000"]);
    const client = await TestClient.connect(server.socketPath);
    const inFlight = [
      client.request("a", { op: "sleep", ms: 300 }),
      client.request("b", { op: "sleep", ms: 500 }),
      client.request("c", { op: "echo", value: "quick" }),
    ];
    await inFlight[2];
    server.child.kill("SIGTERM");
    // The socket file goes away as soon as draining starts, and no new client can connect.
    await expect.poll(() => existsSync(server.socketPath)).toBe(false);
    const late = await client.request("late", { op: "echo", value: "too late" });
    expect(late).toMatchObject({ type: "error", id: "late", error: { type: "ShuttingDown" } });
    expect(await inFlight[0]).toEqual({ type: "response", id: "a", payload: { value: "slept 300" } });
    expect(await inFlight[1]).toEqual({ type: "response", id: "b", payload: { value: "slept 500" } });
    await client.closed;
    expect(await server.exited).toEqual({ code: 0, signal: null });
    expect(server.stderr()).toContain("SIGTERM: draining 2 request(s)");
  });

  it("past the grace period, aborts what is left: each ends Cancelled, then exits 0", async ({ expect }) => {
    const server = await startCli(["--app", BEHAVIOUR_APP], { env: { OCIAPP_SHUTDOWN_GRACE_MS: "200" } });
    const client = await TestClient.connect(server.socketPath);
    const honours = client.request("honours", { op: "wait-abort" });
    const ignores = client.request("ignores", { op: "hang" });
    const finishes = client.request("finishes", { op: "sleep", ms: 50 });
    await client.request("sync", { op: "echo" });
    server.child.kill("SIGINT");
    expect(await finishes).toMatchObject({ type: "response" });
    expect(await honours).toMatchObject({ type: "error", error: { type: "Cancelled" } });
    expect(await ignores).toMatchObject({ type: "error", error: { type: "Cancelled" } });
    expect(await server.exited).toEqual({ code: 0, signal: null });
  });

  it("queued requests waiting for a slot are cancelled at once at the end of the grace period", async ({
    expect,
  }) => {
    const server = await startCli([
      "--app",
      BEHAVIOUR_APP,
      "--max-concurrency",
      "1",
      "--shutdown-grace",
      "100",
    ]);
    const client = await TestClient.connect(server.socketPath);
    const running = client.request("running", { op: "wait-abort" });
    const queued = client.request("queued", { op: "echo", value: "never ran" });
    // An invalid request is answered before it needs a slot: once it is, the two above are in.
    expect(await client.request("sync", { op: "nope" })).toMatchObject({
      error: { type: "ValidationError" },
    });
    server.child.kill("SIGTERM");
    expect(await queued).toMatchObject({ type: "error", error: { type: "Cancelled" } });
    expect(await running).toMatchObject({ type: "error", error: { type: "Cancelled" } });
    expect(await server.exited).toEqual({ code: 0, signal: null });
  });

  // serve() closing itself when no client ever came is tested in-process (server.test.ts).
  it("the orphan timeout ends the process once the last client has gone, not while one is connected", async ({
    expect,
  }) => {
    const server = await startCli(["--app", BEHAVIOUR_APP, "--orphan-timeout", "400"]);
    const client = await TestClient.connect(server.socketPath);
    // Connected for well past the timeout: the server stays.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(await client.request("x", { op: "echo", value: "alive" })).toMatchObject({ type: "response" });
    const disconnectedAt = Date.now();
    client.close();
    expect(await server.exited).toEqual({ code: 0, signal: null });
    expect(Date.now() - disconnectedAt).toBeGreaterThanOrEqual(350);
    expect(server.stderr()).toContain("no host connected for 400 ms");
  });
});
