// Remote execution figures: warm p50 through an agent over TLS on loopback and across a network
// namespace hop, beside the local p50 measured in the same run, and throughput with 256 callers.
// Runnable alone (`node --conditions=source --import tsx bench/remote.ts`: builds echo-app first) or
// from bench/run.ts (measureRemote). The agent is its own process, as in production.

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { connect, createSecureServer } from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { build } from "ociapp-build";
import { type Executor, RemoteExecutor, Runtime } from "ociapp-runtime";
import { Agent, hashToken, parseAgentConfig } from "ociapp-runtime/agent";
import { writeArtifact } from "../packages/ociapp-runtime/tests/remote/support/artifacts.js";
import { makePki } from "../packages/ociapp-runtime/tests/remote/support/certs.js";
import { Namespace } from "../packages/ociapp-runtime/tests/remote/support/netns.js";
import { type Latency, measureLatency, measureThroughput, round, type Throughput } from "./measure.js";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const AGENT_ENTRY = join(ROOT, "packages/ociapp-runtime/tests/remote/support/agent-entry.ts");
const PAYLOAD = { value: "hello" };
const LATENCY_CALLS = 5_000;
const THROUGHPUT_CALLS = 20_000;
const TOKEN = "bench-token-0123456789abcdef";

export interface RemoteFigures {
  /** In one process, no container: RemoteExecutor -> agent -> a no-op executor, and a bare HTTP/2 TLS echo. */
  layer: {
    layer: { latency: Latency; throughput256: Throughput };
    bareHttp2: { latency: Latency; throughput256: Throughput };
  };
  local: { latency: Latency; throughput256: Throughput };
  loopback: { latency: Latency; throughput256: Throughput; addedP50Us: number };
  namespaceHop: { latency: Latency; addedP50Us: number } | { skipped: string };
  targetAddedP50Us: number;
}

async function startAgent(
  work: string,
  name: string,
  host: string,
  pki: { certPath: string; keyPath: string },
  wrap: (command: string[]) => string[] = (command) => command,
): Promise<{ url: string; process: ChildProcess }> {
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
    "--conditions=source",
    "--import",
    "tsx",
    AGENT_ENTRY,
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

async function stopAgent(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

async function remoteFigures(url: string, ca: Buffer, artifact: string, throughput: boolean) {
  const remote = new RemoteExecutor({ agents: [url], token: TOKEN, ca });
  try {
    await remote.warm(artifact);
    const digest = remote.stats().agents[0]?.warm[0] ?? artifact;
    const call = () => remote.execute(digest, PAYLOAD);
    const latency = await measureLatency(call, LATENCY_CALLS, 500);
    const throughput256 = throughput ? await measureThroughput(call, 256, THROUGHPUT_CALLS) : undefined;
    return { latency, throughput256 };
  } finally {
    await remote.close();
  }
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
): Promise<RemoteFigures> {
  const work = await mkdtemp(join(tmpdir(), "ociapp-bench-remote-"));
  const namespaces: Namespace[] = [];
  const agents: ChildProcess[] = [];
  try {
    const pki = await makePki(work, ["127.0.0.1", "10.213.99.2"]);
    log("remote: local p50 and 256 callers, same run");
    const runtime = new Runtime({ minInstances: 1 });
    let local: RemoteFigures["local"];
    try {
      await runtime.warm(artifact);
      const call = () => runtime.execute(artifact, PAYLOAD);
      local = {
        latency: await measureLatency(call, LATENCY_CALLS, 500),
        throughput256: await measureThroughput(call, 256, THROUGHPUT_CALLS),
      };
    } finally {
      await runtime.close();
    }

    log("remote: an agent process over TLS on loopback");
    const loopbackAgent = await startAgent(work, "loopback", "127.0.0.1", pki);
    agents.push(loopbackAgent.process);
    const loopback = await remoteFigures(loopbackAgent.url, pki.ca, artifact, true);
    await stopAgent(loopbackAgent.process);

    let namespaceHop: RemoteFigures["namespaceHop"];
    if (process.getuid?.() !== 0) {
      namespaceHop = { skipped: "needs root (network namespaces)" };
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
      const hopAgent = await startAgent(work, "hop", "10.213.99.2", pki, (command) =>
        namespace.enter(command),
      );
      agents.push(hopAgent.process);
      const hop = await remoteFigures(hopAgent.url, pki.ca, artifact, false);
      await stopAgent(hopAgent.process);
      namespaceHop = { latency: hop.latency, addedP50Us: round(hop.latency.p50Us - local.latency.p50Us) };
    }
    log("remote: the layer alone (no container) beside a bare node:http2 TLS echo, one process");
    const layer = await measureLayer(work, pki);
    return {
      layer,
      local,
      loopback: {
        latency: loopback.latency,
        throughput256: loopback.throughput256 as Throughput,
        addedP50Us: round(loopback.latency.p50Us - local.latency.p50Us),
      },
      namespaceHop,
      targetAddedP50Us: 250,
    };
  } finally {
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
    const figures = await measureRemote(artifact.path, log);
    process.stdout.write(`${JSON.stringify(figures, null, 2)}\n`);
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}
