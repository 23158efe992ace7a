// Remote execution: an agent (ociapp-runtime serve, here started as a library) and a client
// (RemoteExecutor) that runs echo-app on it over HTTP/2 and TLS. In two terminals, or one:
//
//   node --conditions=source --import tsx examples/remote-demo.ts agent &
//   node --conditions=source --import tsx examples/remote-demo.ts client dist/echo-app-0.1.0.ociapp
//   kill %1; wait
//
// The agent makes a throwaway CA, a certificate for 127.0.0.1 and a token in /tmp/ociapp-remote-demo
// (the client reads them from there), listens on 127.0.0.1:8443, writes `ready` (its pid) once it
// listens, and drains on Ctrl-C or SIGTERM. The client waits up to 60 s for a live agent's `ready`. The
// names the artifact by its path: it computes the digest, the agent answers 404 the first time, the
// client uploads the file (the agent verifies every blob and the digest), and calls run by digest.

import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { RemoteExecutor } from "ociapp-runtime";
import { Agent, hashToken, parseAgentConfig } from "ociapp-runtime/agent";

const DIR = "/tmp/ociapp-remote-demo";
const URL = "https://127.0.0.1:8443";
const READY = "ready";

function openssl(args: string[]): void {
  execFileSync("openssl", args, { cwd: DIR, stdio: "ignore" });
}

async function agent(): Promise<void> {
  mkdirSync(DIR, { recursive: true, mode: 0o700 });
  rmSync(join(DIR, READY), { force: true });
  const key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  openssl([
    "req",
    "-x509",
    ...key,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "1",
    "-subj",
    "/CN=demo CA",
  ]);
  openssl(["req", ...key, "-keyout", "agent.key", "-out", "agent.csr", "-subj", "/CN=demo agent"]);
  writeFileSync(join(DIR, "agent.ext"), "subjectAltName=IP:127.0.0.1\n");
  openssl([
    "x509",
    "-req",
    "-in",
    "agent.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "agent.pem",
    "-days",
    "1",
    "-extfile",
    "agent.ext",
  ]);
  const token = randomBytes(24).toString("base64url");
  writeFileSync(join(DIR, "token"), token, { mode: 0o600 });
  const config = parseAgentConfig({
    listen: { host: "127.0.0.1", port: 8443 },
    tls: { cert: join(DIR, "agent.pem"), key: join(DIR, "agent.key") },
    store: join(DIR, "store"),
    // The configuration holds the token's sha256, never the token.
    tokens: [
      {
        id: "demo",
        sha256: hashToken(token),
        scopes: { digests: ["*"], upload: true, settings: ["timeout"] },
      },
    ],
    policy: { maxTimeout: 60_000 },
    runtime: { idleTimeout: 120_000 },
  });
  // One audit record per request, to a file here (the agent's default is a JSON line each on stderr).
  const audit = createWriteStream(join(DIR, "audit.log"), { flags: "a" });
  const started = await Agent.start({
    config,
    audit: (record) => audit.write(`${JSON.stringify(record)}\n`),
  });
  console.log(
    `agent ${started.id} listening on ${started.url}; token, CA and audit.log in ${DIR}; Ctrl-C drains`,
  );
  writeFileSync(join(DIR, READY), String(process.pid));
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  console.log("draining");
  rmSync(join(DIR, READY), { force: true });
  await started.drain();
  audit.end();
}

/** Waits (up to 60 s) for `ready` naming a live process: an agent that listens. */
async function agentReady(): Promise<void> {
  const file = join(DIR, READY);
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (existsSync(file)) {
      try {
        process.kill(Number(readFileSync(file, "utf8")), 0);
        return;
      } catch {
        // a stale file: that agent is gone
      }
    }
    if (Date.now() > deadline)
      throw new Error(`no agent is ready (no live ${file} within 60 s): start one first`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function client(artifact: string): Promise<void> {
  await agentReady();
  const remote = new RemoteExecutor({
    agents: [URL],
    token: readFileSync(join(DIR, "token"), "utf8"),
    ca: readFileSync(join(DIR, "ca.pem")),
  });
  try {
    let started = performance.now();
    console.log(
      "first call (upload if needed, cold start):",
      await remote.execute(artifact, { value: "hello" }),
    );
    console.log(`  ${(performance.now() - started).toFixed(1)} ms`);
    started = performance.now();
    for (let i = 0; i < 100; i++) await remote.execute(artifact, { value: `warm ${i}` });
    console.log(`100 warm calls, one at a time: ${((performance.now() - started) / 100).toFixed(2)} ms each`);
    started = performance.now();
    await Promise.all(
      Array.from({ length: 100 }, (_, i) => remote.execute(artifact, { value: `concurrent ${i}` })),
    );
    console.log(`100 concurrent calls: ${(performance.now() - started).toFixed(1)} ms`);
    const controller = new AbortController();
    const aborted = remote.execute(artifact, { value: "never mind" }, { signal: controller.signal });
    controller.abort(new Error("aborted by the caller"));
    console.log("an aborted call:", await aborted.catch((error: Error) => error.message));
    const { agents } = remote.stats();
    console.log(
      "agents:",
      agents.map((entry) => `${entry.url} healthy=${entry.healthy} warm=${entry.warm.length}`),
    );
  } finally {
    await remote.close();
  }
}

const [mode, artifact] = process.argv.slice(2);
try {
  if (mode === "agent") await agent();
  else if (mode === "client" && artifact) await client(artifact);
  else {
    console.error("usage: remote-demo.ts agent | remote-demo.ts client <file.ociapp>");
    process.exitCode = 1;
  }
} catch (error) {
  // One line for what went wrong (a port in use, no agent, a missing artifact), not a stack trace.
  console.error(`remote-demo: ${(error as Error).message}`);
  process.exitCode = 1;
}
