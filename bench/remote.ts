// Remote execution figures: warm p50 through an agent over TLS on loopback and across a network
// namespace hop, beside the local p50 measured in the same run, and throughput with 256 callers.
// Local, loopback and hop are sampled in interleaved rounds (so load on a shared machine falls on
// each alike), each with the CPU per call of the client (this process), the agent process and the
// container (its cgroup), which move far less with load than wall time does. Runnable alone
// (`node --conditions=source --import tsx bench/remote.ts [rounds]`: builds echo-app first; WRITE=1
// records the figures in bench/results.json as "remote"; it needs `pnpm build` first) or from
// bench/run.ts (measureRemote). The agent is its own process running the package's bin on its
// built dist, as in production (AGENT_FROM=source runs it from the sources through tsx instead).

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, open, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { connect, createSecureServer } from "node:http2";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { build } from "ociapp-build";
import { type Executor, RemoteExecutor, Runtime } from "ociapp-runtime";
import { Agent, hashToken, parseAgentConfig } from "ociapp-runtime/agent";
import { writeArtifact } from "../packages/ociapp-runtime/tests/remote/support/artifacts.js";
import { makePki } from "../packages/ociapp-runtime/tests/remote/support/certs.js";
import { Namespace } from "../packages/ociapp-runtime/tests/remote/support/netns.js";
import { type Spread, spread } from "./coldstart.js";
import { type Latency, measureLatency, measureThroughput, round, type Throughput } from "./measure.js";
import { containerCpuNs, imageOf } from "./warm.js";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** The agent as it ships: the package's bin on its built dist (`pnpm bench` builds first). */
const AGENT_BIN = join(ROOT, "packages/ociapp-runtime/bin/ociapp-runtime.js");
/** The agent from the sources through tsx (AGENT_FROM=source): it costs the agent about 13 us more CPU per call. */
const AGENT_SOURCE = join(ROOT, "packages/ociapp-runtime/tests/remote/support/agent-entry.ts");
const PAYLOAD = { value: "hello" };
const LATENCY_CALLS = 5_000;
const THROUGHPUT_CALLS = 20_000;
/** Calls each side gets before round 1, as an agent in service has had (its JIT; the container's). */
const WARMUP_CALLS = 5_000;
const TOKEN = "bench-token-0123456789abcdef";

/** CPU per call, us: the client (this process), the agent process, the container's cgroup. */
export interface CallCpu {
  client: Spread;
  agent?: Spread;
  container: Spread;
}

export interface RemoteFigures {
  /** In one process, no container: RemoteExecutor -> agent -> a no-op executor, and a bare HTTP/2 TLS echo. */
  layer: {
    layer: { latency: Latency; throughput256: Throughput };
    bareHttp2: { latency: Latency; throughput256: Throughput };
  };
  /** Latency figures are the last round's; the spreads and added p50 are over every round. */
  local: { latency: Latency; throughput256: Throughput; p50Us: Spread; cpuUs: CallCpu };
  loopback: {
    latency: Latency;
    throughput256: Throughput;
    p50Us: Spread;
    cpuUs: CallCpu;
    /** The median of each round's remote p50 minus that round's local p50. */
    addedP50Us: number;
    addedP50UsSpread: Spread;
  };
  namespaceHop:
    | { latency: Latency; p50Us: Spread; cpuUs: CallCpu; addedP50Us: number; addedP50UsSpread: Spread }
    | { skipped: string };
  rounds: number;
  loadAverage: { before: number; after: number };
  targetAddedP50Us: number;
}

export async function startAgent(
  work: string,
  name: string,
  host: string,
  pki: { certPath: string; keyPath: string },
  wrap: (command: string[]) => string[] = (command) => command,
  /** The agent program: a .js runs on plain node, a .ts through tsx (another build, to compare two in one run). */
  entry = process.env.AGENT_FROM === "source" ? AGENT_SOURCE : AGENT_BIN,
): Promise<{ url: string; process: ChildProcess }> {
  if (entry === AGENT_BIN) await assertBuilt();
  const config = join(work, `${name}.json`);
  await writeFile(
    config,
    JSON.stringify({
      listen: { host, port: 0 },
      tls: { cert: pki.certPath, key: pki.keyPath },
      store: join(work, `${name}-store`),
      tokens: [{ id: "bench", sha256: hashToken(TOKEN), scopes: { digests: ["*"], upload: true } }],
      runtime: { minInstances: 1 },
      limits: { drainTimeout: 5_000 },
    }),
  );
  const [file, ...args] = wrap([
    process.execPath,
    // AGENT_NODE_FLAGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/agent-prof") profiles the agent.
    ...(process.env.AGENT_NODE_FLAGS?.split(" ").filter(Boolean) ?? []),
    ...(entry.endsWith(".ts") ? ["--conditions=source", "--import", "tsx"] : []),
    entry,
    "serve",
    "--config",
    config,
  ]);
  // Its log (an audit line per call) goes to a file: a pipe this busy process reads late would block
  // the agent's synchronous stderr writes and measure the pipe instead.
  const logPath = join(work, `${name}.log`);
  const log = await open(logPath, "w");
  const child = spawn(file as string, args, { stdio: ["ignore", "ignore", log.fd] });
  await log.close();
  const url = await new Promise<string>((resolve, reject) => {
    const deadline = Date.now() + 60_000;
    child.once("exit", (code) => reject(new Error(`agent ${name} exited ${code}`)));
    const poll = async () => {
      const match = /listening on (\S+)/.exec(await readFile(logPath, "utf8"));
      if (match) resolve(match[1] as string);
      else if (Date.now() > deadline) reject(new Error(`agent ${name} did not start`));
      else setTimeout(() => void poll(), 50);
    };
    void poll();
  });
  return { url, process: child };
}

/**
 * Refuses to measure a dist older than the sources it is built from (bench/remote.ts run alone
 * after an edit, without `pnpm build`): the figures would be another agent's.
 */
async function assertBuilt(): Promise<void> {
  const pkg = join(ROOT, "packages/ociapp-runtime");
  const built = await stat(join(pkg, "dist/remote/agent/cli.js")).catch(() => undefined);
  if (built === undefined) throw new Error("packages/ociapp-runtime/dist is missing: run pnpm build first");
  for (const name of await readdir(join(pkg, "src"), { recursive: true })) {
    if (name.endsWith(".ts") && (await stat(join(pkg, "src", name))).mtimeMs > built.mtimeMs) {
      throw new Error(`packages/ociapp-runtime/src/${name} is newer than dist: run pnpm build first`);
    }
  }
}

export async function stopAgent(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

/** CPU time (user + system) of a process, us, from /proc (NaN where it cannot be read). */
function processCpuUs(pid: number | undefined): number {
  try {
    // Fields after the command (which may hold spaces) ends with ")": utime and stime are 14 and 15.
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / 100; // USER_HZ is 100 on Linux
  } catch {
    return Number.NaN;
  }
}

/** Ids of running containers of the echo-app image (the agent's is the one that is new). */
async function containersOf(image: string): Promise<string[]> {
  const { stdout } = await run("docker", ["ps", "-q", "--no-trunc", "--filter", `ancestor=${image}`]);
  return stdout.split("\n").filter(Boolean);
}

interface Side {
  call: () => Promise<unknown>;
  agentPid?: number;
  containerId: string;
  close: () => Promise<void>;
}

interface Sample {
  latency: Latency;
  client: number;
  agent: number;
  container: number;
}

/** One round of one side: warm-up, then LATENCY_CALLS sequential calls with the CPU each process used. */
async function sample(side: Side): Promise<Sample> {
  await measureLatency(side.call, 0, 500);
  const client = process.cpuUsage();
  const agent = processCpuUs(side.agentPid);
  const container = containerCpuNs(side.containerId);
  const latency = await measureLatency(side.call, LATENCY_CALLS, 0);
  const used = process.cpuUsage(client);
  return {
    latency,
    client: (used.user + used.system) / LATENCY_CALLS,
    agent: (processCpuUs(side.agentPid) - agent) / LATENCY_CALLS,
    container: (containerCpuNs(side.containerId) - container) / 1000 / LATENCY_CALLS,
  };
}

function cpuOf(samples: Sample[], agent: boolean): CallCpu {
  const figures: CallCpu = {
    client: spread(samples.map((s) => s.client)),
    container: spread(samples.map((s) => s.container)),
  };
  if (agent) figures.agent = spread(samples.map((s) => s.agent));
  return figures;
}

async function remoteSide(url: string, ca: Buffer, artifact: string, image: string, pid?: number) {
  const before = new Set(await containersOf(image));
  const remote = new RemoteExecutor({ agents: [url], token: TOKEN, ca });
  await remote.warm(artifact);
  const digest = remote.stats().agents[0]?.warm[0] ?? artifact;
  const containerId = (await containersOf(image)).find((id) => !before.has(id)) ?? "";
  const side: Side = {
    call: () => remote.execute(digest, PAYLOAD),
    containerId,
    close: () => remote.close(),
  };
  if (pid !== undefined) side.agentPid = pid;
  return side;
}

/**
 * What the remote layer itself costs, with no container: an agent in this process whose executor
 * answers at once, reached by a RemoteExecutor, beside a bare node:http2 TLS echo in this process.
 */
async function measureLayer(work: string, pki: { certPath: string; keyPath: string; ca: Buffer }) {
  const artifact = await writeArtifact(join(work, "layer.ociapp"), "layer");
  const noop: Executor = {
    execute: async <Res>(_artifact: string, request: unknown) => request as Res,
    warm: async () => undefined,
    drain: async () => undefined,
    stats: () => ({ closed: false, artifacts: [] }),
    close: async () => undefined,
    [Symbol.asyncDispose]: async () => undefined,
  };
  const config = parseAgentConfig({
    listen: { host: "127.0.0.1", port: 0 },
    tls: { cert: pki.certPath, key: pki.keyPath },
    store: join(work, "layer-store"),
    tokens: [{ id: "bench", sha256: hashToken(TOKEN), scopes: { digests: ["*"], upload: true } }],
  });
  const agent = await Agent.start({ config, executor: noop, audit: () => undefined });
  const remote = new RemoteExecutor({ agents: [agent.url], token: TOKEN, ca: pki.ca });
  const server = createSecureServer({ key: await readFile(pki.keyPath), cert: await readFile(pki.certPath) });
  server.on("stream", (stream) => {
    const chunks: Buffer[] = [];
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () => {
      stream.respond({ ":status": 200, "content-type": "application/json" });
      stream.end(Buffer.concat(chunks));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const session = connect(`https://127.0.0.1:${(server.address() as { port: number }).port}`, { ca: pki.ca });
  const bare = () =>
    new Promise<unknown>((resolve, reject) => {
      const stream = session.request({ ":method": "POST", ":path": "/", authorization: `Bearer ${TOKEN}` });
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("end", () => resolve(JSON.parse(Buffer.concat(chunks).toString("utf8"))));
      stream.on("error", reject);
      stream.end(JSON.stringify(PAYLOAD));
    });
  try {
    await remote.warm(artifact.path);
    const call = () => remote.execute(artifact.digest, PAYLOAD);
    return {
      layer: {
        latency: await measureLatency(call, LATENCY_CALLS, 500),
        throughput256: await measureThroughput(call, 256, THROUGHPUT_CALLS),
      },
      bareHttp2: {
        latency: await measureLatency(bare, LATENCY_CALLS, 500),
        throughput256: await measureThroughput(bare, 256, THROUGHPUT_CALLS),
      },
    };
  } finally {
    session.close();
    server.close();
    await remote.close();
    await agent.close();
  }
}

/** Every remote figure, with the local one measured alongside. `artifact` is echo-app's .ociapp. */
export async function measureRemote(
  artifact: string,
  log: (message: string) => void,
  rounds = 1,
): Promise<RemoteFigures> {
  const work = await mkdtemp(join(tmpdir(), "ociapp-bench-remote-"));
  const namespaces: Namespace[] = [];
  const agents: ChildProcess[] = [];
  const sides: Side[] = [];
  const loadBefore = loadavg()[0] as number;
  try {
    const pki = await makePki(work, ["127.0.0.1", "10.213.99.2"]);
    const { readArtifactIndex } = await import("ociapp/artifact");
    const image = imageOf((await readArtifactIndex(artifact)).digest);
    const runtime = new Runtime({ minInstances: 1 });
    await runtime.warm(artifact);
    const local: Side = {
      call: () => runtime.execute(artifact, PAYLOAD),
      containerId: runtime.stats().artifacts[0]?.containers[0]?.id ?? "",
      close: () => runtime.close(),
    };
    sides.push(local);

    log("remote: an agent process over TLS on loopback");
    const loopbackAgent = await startAgent(work, "loopback", "127.0.0.1", pki);
    agents.push(loopbackAgent.process);
    const loopback = await remoteSide(loopbackAgent.url, pki.ca, artifact, image, loopbackAgent.process.pid);
    sides.push(loopback);

    let hop: Side | undefined;
    let skipped = "";
    if (process.getuid?.() !== 0) {
      skipped = "needs root (network namespaces)";
    } else {
      log("remote: an agent in a network namespace, one veth hop away");
      const namespace = await Namespace.create("bench-agent");
      namespaces.push(namespace);
      // This namespace's end of the pair; the other end and its /30 go when the namespace does.
      const ours = `ob${process.pid.toString(16).slice(-6)}`;
      const theirs = `oa${process.pid.toString(16).slice(-6)}`;
      await run("ip", ["link", "add", ours, "type", "veth", "peer", "name", theirs]);
      await run("ip", ["link", "set", theirs, "netns", String(namespace.pid)]);
      await run("ip", ["addr", "add", "10.213.99.1/30", "dev", ours]);
      await run("ip", ["link", "set", ours, "up"]);
      await namespace.ip(["addr", "add", "10.213.99.2/30", "dev", theirs]);
      await namespace.ip(["link", "set", theirs, "up"]);
      // setpriv and nsenter exec the agent: the child's pid is the agent's.
      const hopAgent = await startAgent(work, "hop", "10.213.99.2", pki, (command) =>
        namespace.enter(command),
      );
      agents.push(hopAgent.process);
      hop = await remoteSide(hopAgent.url, pki.ca, artifact, image, hopAgent.process.pid);
      sides.push(hop);
    }

    log(`remote: ${WARMUP_CALLS} warm-up calls on each side`);
    for (const side of sides) await measureLatency(side.call, 0, WARMUP_CALLS);
    const samples = { local: [] as Sample[], loopback: [] as Sample[], hop: [] as Sample[] };
    for (let round = 1; round <= rounds; round++) {
      log(`remote: round ${round}/${rounds}: local, loopback${hop ? ", hop" : ""} p50 and CPU per call`);
      samples.local.push(await sample(local));
      samples.loopback.push(await sample(loopback));
      if (hop) samples.hop.push(await sample(hop));
    }
    log("remote: 256 callers, local and loopback");
    const local256 = await measureThroughput(local.call, 256, THROUGHPUT_CALLS);
    const loopback256 = await measureThroughput(loopback.call, 256, THROUGHPUT_CALLS);
    for (const side of sides.splice(0)) await side.close();
    for (const agent of agents.splice(0)) await stopAgent(agent);

    log("remote: the layer alone (no container) beside a bare node:http2 TLS echo, one process");
    const layer = await measureLayer(work, pki);
    const p50 = (list: Sample[]) => spread(list.map((s) => s.latency.p50Us));
    const added = (list: Sample[]) =>
      spread(list.map((s, i) => s.latency.p50Us - (samples.local[i] as Sample).latency.p50Us));
    const last = (list: Sample[]) => (list.at(-1) as Sample).latency;
    const loopbackAdded = added(samples.loopback);
    let namespaceHop: RemoteFigures["namespaceHop"] = { skipped };
    if (hop) {
      const hopAdded = added(samples.hop);
      namespaceHop = {
        latency: last(samples.hop),
        p50Us: p50(samples.hop),
        cpuUs: cpuOf(samples.hop, true),
        addedP50Us: hopAdded.median,
        addedP50UsSpread: hopAdded,
      };
    }
    return {
      layer,
      local: {
        latency: last(samples.local),
        throughput256: local256,
        p50Us: p50(samples.local),
        cpuUs: cpuOf(samples.local, false),
      },
      loopback: {
        latency: last(samples.loopback),
        throughput256: loopback256,
        p50Us: p50(samples.loopback),
        cpuUs: cpuOf(samples.loopback, true),
        addedP50Us: loopbackAdded.median,
        addedP50UsSpread: loopbackAdded,
      },
      namespaceHop,
      rounds,
      loadAverage: { before: round(loadBefore, 2), after: round(loadavg()[0] as number, 2) },
      targetAddedP50Us: 250,
    };
  } finally {
    for (const side of sides) await side.close().catch(() => undefined);
    for (const agent of agents) await stopAgent(agent).catch(() => undefined);
    for (const namespace of namespaces) namespace.destroy();
    await rm(work, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const log = (message: string) => process.stderr.write(`[bench] ${message}\n`);
  const out = await mkdtemp(join(tmpdir(), "ociapp-bench-echo-"));
  try {
    log("building examples/echo-app");
    const artifact = await build({
      projectRoot: join(ROOT, "examples/echo-app"),
      outputDir: out,
      network: "host",
      progress: "quiet",
    });
    const figures = await measureRemote(artifact.path, log, Number(process.argv[2] ?? 5));
    if (process.env.WRITE === "1") {
      const path = new URL("./results.json", import.meta.url);
      const results = JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
      results.remote = { measuredAt: new Date().toISOString(), node: process.version, ...figures };
      await writeFile(path, `${JSON.stringify(results, null, 2)}\n`);
    }
    process.stdout.write(`${JSON.stringify(figures, null, 2)}\n`);
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}
