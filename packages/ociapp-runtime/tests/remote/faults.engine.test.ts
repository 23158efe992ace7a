import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeLayout, tarBuffer } from "../../../ociapp/tests/artifact-fixtures.js";
import { type FixtureProject, fixtureProject } from "../support/fixture-build.js";
import { makePki, type TestPki } from "./support/certs.js";
import { ADMIN, AgentProcess, containersOf, Driver, type DriverAnswer, NARROW } from "./support/fault-lab.js";
import { link, Namespace } from "./support/netns.js";

// Remote execution across real network hops: each agent (`ociapp-runtime serve`, its own process,
// over the real Docker engine) in a network namespace of its own, the client (a RemoteExecutor in a
// process) in another, joined by veth pairs. Faults: an agent killed with calls in flight, a link
// cut mid-call, a lossy link (iptables statistic), a slow link (a relay process), an agent
// restarted, wrong and narrow tokens, a tampered upload, a client killed mid-upload. Each ends in a
// success or a typed error, never a hang; no call runs twice (the agents' audit lines count runs).

const run = promisify(execFile);
const RELAY = fileURLToPath(new URL("./support/relay.ts", import.meta.url));

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually(check: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await sleep(50);
  }
}

function outcome(answer: DriverAnswer): string {
  if (!answer.ok && process.env.OCIAPP_FAULTS_VERBOSE) console.log(answer.error?.message);
  return answer.ok ? "ok" : (answer.error?.code ?? answer.error?.name ?? "?");
}

describe("remote execution across network namespaces", () => {
  let work: string;
  let pki: TestPki;
  let fixture: FixtureProject;
  let artifact: { path: string; digest: string };
  let client: Namespace;
  const namespaces: Namespace[] = [];
  const agents: AgentProcess[] = [];
  const drivers: Driver[] = [];
  let driver: Driver;

  const driverOptions = (overrides: Record<string, unknown> = {}) => ({
    agents: agents.map((agent) => agent.url),
    token: ADMIN,
    ca: pki.ca.toString(),
    healthInterval: 500,
    keepaliveInterval: 1_000,
    keepaliveTimeout: 3_000,
    connectTimeout: 3_000,
    ...overrides,
  });

  function startDriver(overrides: Record<string, unknown> = {}): Driver {
    const made = Driver.start(client, driverOptions(overrides));
    drivers.push(made);
    return made;
  }

  /** The agent holding `count` calls of this driver, from its stats. */
  async function busyAgent(count: number): Promise<AgentProcess> {
    let found: AgentProcess | undefined;
    await eventually(async () => {
      const stats = (await driver.send({ op: "stats" })).value as {
        agents: { url: string; outstanding: number }[];
      };
      const busy = stats.agents.find((entry) => entry.outstanding >= count);
      found = agents.find((agent) => agent.url === busy?.url);
      return found !== undefined;
    });
    return found as AgentProcess;
  }

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "ociapp-faults-"));
    pki = await makePki(work, ["10.213.1.2", "10.213.2.2", "127.0.0.1"]);
    fixture = await fixtureProject();
    artifact = await fixture.build();
    client = await Namespace.create("client");
    namespaces.push(client);
    for (const [index, name] of ["a1", "a2"].entries()) {
      const namespace = await Namespace.create(name);
      namespaces.push(namespace);
      const wired = await link(client, namespace, `10.213.${index + 1}`);
      agents.push(new AgentProcess(name, namespace, wired.b, work, pki));
    }
    await Promise.all(agents.map((agent) => agent.start()));
    driver = startDriver();
  }, 600_000);

  afterAll(async () => {
    await Promise.all(drivers.map((made) => made.stop()));
    await Promise.all(agents.map((agent) => agent.stop("SIGTERM")));
    for (const namespace of namespaces) namespace.destroy();
    // Containers of killed agents exit when their connection ends (and the engine removes them).
    if (artifact)
      await eventually(async () => (await containersOf(artifact.digest)).length === 0, 60_000).catch(
        () => undefined,
      );
    for (const id of artifact ? await containersOf(artifact.digest) : []) {
      await run("docker", ["rm", "-f", id]).catch(() => undefined);
    }
    if (artifact) await run("docker", ["image", "rm", "-f", artifact.digest]).catch(() => undefined);
    await fixture?.remove();
    await rm("/run/ociapp-ft", { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  }, 180_000);

  it("runs calls across the hop, uploading the artifact over the link once per agent", async () => {
    const first = await driver.execute(artifact.path, { op: "echo", value: "across" });
    expect(first).toMatchObject({ ok: true, value: { value: "across" } });
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => driver.execute(artifact.digest, { op: "echo", value: i })),
    );
    expect(answers.map(outcome)).toEqual(Array(20).fill("ok"));
    const uploads = agents.flatMap((agent) =>
      agent.audit.filter((record) => record.route === "PUT /v1/artifacts/"),
    );
    expect(uploads.map((record) => record.status)).toEqual([201]);
    // An agent writes its audit line after the answer: wait for all 21, so later tests' snapshots
    // of the audit do not take in this test's lines as they arrive.
    await eventually(async () => agents.reduce((sum, agent) => sum + agent.executes("ok").length, 0) === 21);
  });

  it("a wrong token and an out-of-scope token get typed errors and run nothing", async () => {
    const before = agents.map((agent) => agent.executes("ok").length);
    const wrong = startDriver({ token: "not-a-token" });
    const narrow = startDriver({ token: NARROW });
    expect(outcome(await wrong.execute(artifact.digest, { op: "echo", value: 1 }))).toBe(
      "OCIAPP_UNAUTHORIZED",
    );
    expect(outcome(await narrow.execute(artifact.digest, { op: "echo", value: 1 }))).toBe("OCIAPP_FORBIDDEN");
    expect(agents.map((agent) => agent.executes("ok").length)).toEqual(before);
    await Promise.all([wrong.stop(), narrow.stop()]);
  });

  it("a tampered upload is refused (409) and leaves nothing on the agent", async () => {
    const layout = makeLayout({
      manifest: (manifest) => ((manifest.annotations as Record<string, string>).salt = "tampered"),
    });
    const bytes = await tarBuffer(layout.files);
    const at = bytes.indexOf(Buffer.alloc(64, 1));
    bytes[at] = 9;
    const path = join(work, "tampered.ociapp");
    await writeFile(path, bytes);
    const answer = await driver.execute(path, { op: "echo", value: 1 });
    expect(outcome(answer)).toBe("OCIAPP_DIGEST_MISMATCH");
    for (const agent of agents) {
      expect(await agent.held()).not.toContain(`${layout.manifestDigest.slice(7)}.ociapp`);
      expect(await agent.incoming()).toEqual([]);
    }
  });

  it("a client killed mid-upload leaves nothing on the agent", async () => {
    const layer = Buffer.alloc(192 * 1024 * 1024, 3);
    const layout = makeLayout({
      manifest: (manifest) => ((manifest.annotations as Record<string, string>).salt = "big"),
    });
    // One big layer in front of the small ones: a valid artifact, slow enough to interrupt.
    const bytes = await tarBuffer([{ name: "blobs/sha256/big-unreferenced", body: layer }, ...layout.files]);
    const path = join(work, "big.ociapp");
    await writeFile(path, bytes);
    const victim = startDriver();
    void victim.execute(path, { op: "echo", value: 1 });
    await eventually(async () =>
      (await Promise.all(agents.map((agent) => agent.incoming()))).some((names) => names.length > 0),
    );
    await victim.stop();
    await eventually(async () =>
      (await Promise.all(agents.map((agent) => agent.incoming()))).every((names) => names.length === 0),
    );
    for (const agent of agents)
      expect(await agent.held()).not.toContain(`${layout.manifestDigest.slice(7)}.ociapp`);
    await rm(path);
  });

  it("an agent killed with calls in flight: its calls get CallLostError, later calls run on the other, none twice", async () => {
    const before = agents.map((agent) => agent.executes("ok").length);
    const calls = Array.from({ length: 6 }, () =>
      driver.execute(artifact.digest, { op: "sleep", ms: 4_000 }),
    );
    const victim = await busyAgent(6);
    await victim.stop("SIGKILL");
    try {
      const lost = await Promise.all(calls);
      expect(lost.map(outcome)).toEqual(Array(6).fill("OCIAPP_CALL_LOST"));
      const after = await Promise.all(
        Array.from({ length: 5 }, (_, i) => driver.execute(artifact.path, { op: "echo", value: i })),
      );
      expect(after.map(outcome)).toEqual(Array(5).fill("ok"));
      const survivor = agents.find((agent) => agent !== victim) as AgentProcess;
      const ran = () => survivor.executes("ok").length - (before[agents.indexOf(survivor)] as number);
      // Five runs on the survivor, no more: none of the lost calls ran again. Its audit lines
      // arrive after the answers, so wait for the five before counting.
      await eventually(() => ran() >= 5);
      expect(ran()).toBe(5);
    } finally {
      await victim.start(); // the same store: it still holds the artifact; later tests need it
    }
  });

  it("a link cut mid-call: the keepalive fails the calls (CallLostError) in bounded time; calls go elsewhere", async () => {
    await eventually(async () => {
      const stats = (await driver.send({ op: "stats" })).value as { agents: { healthy: boolean }[] };
      return stats.agents.every((entry) => entry.healthy);
    });
    const calls = Array.from({ length: 3 }, () =>
      driver.execute(artifact.digest, { op: "sleep", ms: 60_000 }, 65_000),
    );
    const victim = await busyAgent(3);
    const device = (await victim.namespace.ip(["-o", "link", "show", "type", "veth"]))
      .split(":")[1]
      ?.trim()
      .split("@")[0] as string;
    await victim.namespace.ip(["link", "set", device, "down"]);
    try {
      const lost = await Promise.all(calls);
      expect(lost.map(outcome)).toEqual(Array(3).fill("OCIAPP_CALL_LOST"));
      // Long before the calls' own 60 s: the keepalive (1 s PINGs, 3 s without an answer) ended them.
      expect(Math.max(...lost.map((answer) => answer.ms))).toBeLessThan(60_000);
      const after = await Promise.all(
        Array.from({ length: 4 }, (_, i) => driver.execute(artifact.path, { op: "echo", value: i })),
      );
      expect(after.map(outcome)).toEqual(Array(4).fill("ok"));
    } finally {
      await victim.namespace.ip(["link", "set", device, "up"]);
    }
  });

  it("a lossy link (20% of packets dropped both ways): every call succeeds or fails typed, none hangs", async () => {
    for (const agent of agents) {
      await agent.namespace.iptables([
        "-A",
        "INPUT",
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        "0.2",
        "-j",
        "DROP",
      ]);
      await agent.namespace.iptables([
        "-A",
        "OUTPUT",
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        "0.2",
        "-j",
        "DROP",
      ]);
    }
    try {
      const answers: DriverAnswer[] = [];
      for (let i = 0; i < 30; i++)
        answers.push(await driver.execute(artifact.digest, { op: "echo", value: i }, 20_000));
      const outcomes = answers.map(outcome);
      expect(
        outcomes.every((value) =>
          ["ok", "OCIAPP_CALL_LOST", "OCIAPP_AGENT_UNAVAILABLE", "OCIAPP_REQUEST_TIMEOUT"].includes(value),
        ),
      ).toBe(true);
      expect(outcomes.filter((value) => value === "ok").length).toBeGreaterThan(15);
    } finally {
      for (const agent of agents) {
        await agent.namespace.iptables(["-F", "INPUT"]);
        await agent.namespace.iptables(["-F", "OUTPUT"]);
      }
    }
  });

  it("a slow link (a relay adding 40 ms each way): calls succeed", async () => {
    const agent = agents[0] as AgentProcess;
    const relay = agent.namespace.spawn([
      process.execPath,
      "--import",
      "tsx",
      RELAY,
      agent.address,
      "9443",
      agent.address,
      "8443",
      "40",
    ]);
    try {
      await new Promise<void>((resolve, reject) => {
        relay.stdout?.once("data", () => resolve());
        relay.once("exit", (code) => reject(new Error(`relay exited ${code}`)));
      });
      const slow = startDriver({ agents: [`https://${agent.address}:9443`] });
      const answers = await Promise.all(
        Array.from({ length: 10 }, (_, i) => slow.execute(artifact.digest, { op: "echo", value: i })),
      );
      expect(answers.map(outcome)).toEqual(Array(10).fill("ok"));
      expect(Math.min(...answers.map((answer) => answer.ms))).toBeGreaterThanOrEqual(80);
      await slow.stop();
    } finally {
      relay.kill("SIGKILL");
    }
  });

  it("a client cancelling 1,200 calls on one agent over the hop: every other call succeeds and runs once", async () => {
    // One agent only, so all 1,200 resets reach one HTTP/2 server: past its rapid-reset burst (1,000).
    const [target] = agents as [AgentProcess];
    const flooder = startDriver({ agents: [target.url] });
    const before = target.executes("ok").length;
    // Uploaded (if need be) and warm first: a call aborted while it waits for an upload resets nothing.
    expect(await flooder.send({ op: "warm", artifact: artifact.path })).toMatchObject({ ok: true });
    const answer = await flooder.send({ op: "flood", artifact: artifact.digest, rounds: 10, perRound: 240 });
    expect(answer).toMatchObject({ ok: true, value: { answered: 1_200, aborted: 1_200, failed: 0 } });
    const { agents: seen } = answer.value as { agents: { sessions: number; healthy: boolean }[] };
    // 1,200 resets: a new session after the first 500 (and one after the next 500 when a call follows).
    expect(seen[0]?.sessions).toBeGreaterThanOrEqual(2);
    // The 1,200 echoes ran once each (the audit line follows the answer); aborted sleeps never answer ok.
    await eventually(() => target.executes("ok").length - before >= 1_200);
    expect(target.executes("ok").length - before).toBe(1_200);
    await flooder.stop();
  }, 300_000);

  it("an agent restarted (SIGTERM, then started again): calls in flight finish, calls meanwhile run elsewhere", async () => {
    // By path: a call that reaches the agent after its SIGTERM is refused (503, it never ran) and sent
    // to the other agent, which may need the file uploaded first.
    const calls = Array.from({ length: 3 }, () =>
      driver.execute(artifact.path, { op: "sleep", ms: 1_500, value: "drained" }),
    );
    // Both agents may be warm, so the calls may be spread: stop one that holds some.
    const victim = await busyAgent(1);
    const stopping = victim.stop("SIGTERM");
    await sleep(100);
    const meanwhile = await Promise.all(
      Array.from({ length: 4 }, (_, i) => driver.execute(artifact.path, { op: "echo", value: i })),
    );
    expect(meanwhile.map(outcome)).toEqual(Array(4).fill("ok"));
    expect((await Promise.all(calls)).map(outcome)).toEqual(Array(3).fill("ok"));
    await stopping;
    await victim.start();
    await eventually(async () => {
      const stats = (await driver.send({ op: "stats" })).value as {
        agents: { url: string; healthy: boolean }[];
      };
      return stats.agents.find((entry) => entry.url === victim.url)?.healthy === true;
    });
    expect(outcome(await driver.execute(artifact.digest, { op: "echo", value: "back" }))).toBe("ok");
  });
});
