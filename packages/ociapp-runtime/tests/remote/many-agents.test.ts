import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  AgentUnavailableError,
  CallLostError,
  QueueFullError,
  RemoteExecutor,
  type RemoteExecutorOptions,
} from "../../src/index.js";
import { rejection } from "../support/outcomes.js";
import { startTestAgent, type TestAgent, TOKENS } from "./support/agents.js";
import { writeArtifact } from "./support/artifacts.js";
import { makePki, type TestPki } from "./support/certs.js";
import { type Relay, startRelay } from "./support/relay.js";

// RemoteExecutor over several agents (each in this process, over TLS, on the process engine):
// affinity, least outstanding, retries only of calls that never ran, no client queue.

const executes = (agent: TestAgent) =>
  agent.audit.filter((record) => record.route === "POST /v1/artifacts/execute");

describe("RemoteExecutor over several agents", () => {
  let pki: TestPki;
  let work: string;
  let artifact: { path: string; digest: string };
  const agents: TestAgent[] = [];
  const relays: Relay[] = [];
  const clients: RemoteExecutor[] = [];

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "many-agents-"));
    pki = await makePki(work);
    artifact = await writeArtifact(join(work, "a.ociapp"), "many");
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((client) => client.close()));
    await Promise.all(relays.splice(0).map((relay) => relay.close()));
    await Promise.all(agents.splice(0).map((agent) => agent.stop()));
  });

  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  async function start(count: number): Promise<TestAgent[]> {
    const started = await Promise.all(Array.from({ length: count }, () => startTestAgent(pki)));
    agents.push(...started);
    return started;
  }

  function client(urls: string[], options: Partial<RemoteExecutorOptions> = {}): RemoteExecutor {
    const made = new RemoteExecutor({
      agents: urls,
      token: TOKENS.admin,
      ca: pki.ca,
      healthInterval: 200,
      ...options,
    });
    clients.push(made);
    return made;
  }

  it("keeps an artifact on the agent that has it warm, and spreads concurrent cold calls by outstanding count", async () => {
    const [a, b, c] = await start(3);
    const remote = client([a, b, c].map((agent) => (agent as TestAgent).agent.url));
    await remote.execute(artifact.path, { op: "echo", value: 0 });
    const warm = agents.find((agent) =>
      executes(agent).some((record) => record.outcome === "ok"),
    ) as TestAgent;
    for (let i = 0; i < 10; i++) await remote.execute(artifact.digest, { op: "echo", value: i });
    expect(executes(warm).filter((record) => record.outcome === "ok")).toHaveLength(11);
    // Nine concurrent slow calls on a second artifact no agent has warm: three each.
    const second = await writeArtifact(join(work, "b.ociapp"), "spread");
    await Promise.all([a, b, c].map((agent) => client([(agent as TestAgent).agent.url]).warm(second.path)));
    for (const agent of agents) (agent.audit as unknown[]).length = 0;
    const fresh = client([a, b, c].map((agent) => (agent as TestAgent).agent.url));
    await Promise.all(
      Array.from({ length: 9 }, () => fresh.execute(second.digest, { op: "sleep", ms: 300 })),
    );
    expect(agents.map((agent) => executes(agent).length)).toEqual([3, 3, 3]);
  });

  it("sends a call that never reached an agent to another one: a refused connection, an agent draining", async () => {
    const [a, b] = await start(2);
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const deadPort = (closed.address() as { port: number }).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const remote = client(
      [`https://127.0.0.1:${deadPort}`, (a as TestAgent).agent.url, (b as TestAgent).agent.url],
      {
        healthInterval: 60_000,
      },
    );
    for (let i = 0; i < 6; i++)
      expect(await remote.execute(artifact.path, { op: "echo", value: i })).toMatchObject({ value: i });
    // Drain the agent that has it warm: the next calls go to the other one, none fails.
    const warm = executes(a as TestAgent).length > 0 ? (a as TestAgent) : (b as TestAgent);
    const other = warm === a ? (b as TestAgent) : (a as TestAgent);
    const draining = warm.agent.drain();
    for (let i = 0; i < 4; i++)
      expect(await remote.execute(artifact.path, { op: "echo", value: i })).toMatchObject({ value: i });
    await draining;
    expect(executes(other).filter((record) => record.outcome === "ok").length).toBeGreaterThanOrEqual(4);
    await other.agent.drain();
    const none = await rejection(remote.execute(artifact.digest, { op: "echo", value: 1 }));
    expect(none).toBeInstanceOf(AgentUnavailableError);
  });

  it("never sends a call again once it was sent: a connection cut mid-call is CallLostError", async () => {
    const [a, b] = await start(2);
    const relay = await startRelay({
      host: "127.0.0.1",
      port: 0,
      targetHost: "127.0.0.1",
      targetPort: (a as TestAgent).agent.port,
      delayMs: 0,
    });
    relays.push(relay);
    const remote = client([`https://127.0.0.1:${relay.port}`], { healthInterval: 60_000 });
    await remote.warm(artifact.path);
    const call = remote.execute(artifact.digest, { op: "sleep", ms: 2_000, value: "late" });
    await new Promise((resolve) => setTimeout(resolve, 300));
    relay.cut();
    const lost = await rejection(call);
    expect(lost).toBeInstanceOf(CallLostError);
    expect(executes(b as TestAgent)).toEqual([]);
    // The agent saw the client go and aborted the call: it ran once, and not to its end.
    const deadline = Date.now() + 10_000;
    while (executes(a as TestAgent).at(-1)?.outcome !== "CLIENT_GONE" && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(executes(a as TestAgent).map((record) => record.outcome)).toEqual(["CLIENT_GONE"]);
  });

  it("resolves an agent name to its addresses, one agent each, verifying TLS against the name", async () => {
    const [a] = await start(1);
    const remote = client([`https://localhost:${(a as TestAgent).agent.port}`], { resolveInterval: 100 });
    expect(await remote.execute(artifact.path, { op: "echo", value: "by name" })).toMatchObject({
      value: "by name",
    });
    const deadline = Date.now() + 10_000;
    while (
      remote.stats().agents.some((agent) => agent.address.includes("localhost")) &&
      Date.now() < deadline
    ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const addresses = remote.stats().agents.map((agent) => agent.address);
    expect(addresses).toContain(`https://127.0.0.1:${(a as TestAgent).agent.port}`);
    expect(addresses.every((address) => !address.includes("localhost"))).toBe(true);
    expect(await remote.execute(artifact.digest, { op: "echo", value: "by address" })).toMatchObject({
      value: "by address",
    });
  });

  it("has no client queue: past maxOutstanding per agent, QueueFullError at once", async () => {
    const [a] = await start(1);
    // Health checks every 10 ms: they are not calls, so they never take one of the two places.
    const remote = client([(a as TestAgent).agent.url], { maxOutstanding: 2, healthInterval: 10 });
    await remote.warm(artifact.path);
    for (let round = 0; round < 5; round++) {
      const running = [1, 2].map(() => remote.execute(artifact.digest, { op: "sleep", ms: 100 }));
      const third = await rejection(remote.execute(artifact.digest, { op: "echo", value: 3 }));
      expect(third).toBeInstanceOf(QueueFullError);
      expect((third as Error).message).toMatch(/maxOutstanding/);
      await Promise.all(running);
      await new Promise((resolve) => setTimeout(resolve, 15));
    }
    expect(await remote.execute(artifact.digest, { op: "echo", value: 4 })).toMatchObject({ value: 4 });
  });

  it("close() waits for calls in flight, then refuses new ones; nothing keeps running", async () => {
    const [a] = await start(1);
    const remote = client([(a as TestAgent).agent.url]);
    await remote.warm(artifact.path);
    const running = remote.execute(artifact.digest, { op: "sleep", ms: 300, value: "finished" });
    await new Promise((resolve) => setTimeout(resolve, 50));
    await remote.close();
    expect(await running).toMatchObject({ value: "finished" });
    expect(((await rejection(remote.execute(artifact.digest, null))) as Error).constructor.name).toBe(
      "RuntimeClosedError",
    );
    expect(remote.stats().closed).toBe(true);
  });
});
