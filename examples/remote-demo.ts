// Remote execution in two terminals: an agent (ociapp-runtime serve, here started as a library)
// and a client (RemoteExecutor) that runs echo-app on it over HTTP/2 and TLS.
//
//   node --conditions=source --import tsx examples/remote-demo.ts agent
//   node --conditions=source --import tsx examples/remote-demo.ts client dist/echo-app-0.1.0.ociapp
//
// The agent makes a throwaway CA, a certificate for 127.0.0.1 and a token in /tmp/ociapp-remote-demo
// (the client reads them from there), listens on 127.0.0.1:8443 and drains on Ctrl-C. The client
// names the artifact by its path: it computes the digest, the agent answers 404 the first time, the
// client uploads the file (the agent verifies every blob and the digest), and calls run by digest.

import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { RemoteExecutor } from "ociapp-runtime";
import { Agent, hashToken, parseAgentConfig } from "ociapp-runtime/agent";

const DIR = "/tmp/ociapp-remote-demo";
const URL = "https://127.0.0.1:8443";

function openssl(args: string[]): void {
  execFileSync("openssl", args, { cwd: DIR, stdio: "ignore" });
}

async function agent(): Promise<void> {
  mkdirSync(DIR, { recursive: true, mode: 0o700 });
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
  const started = await Agent.start({ config });
  console.log(`agent ${started.id} listening on ${started.url}; token and CA in ${DIR}; Ctrl-C drains`);
  await new Promise<void>((resolve) => process.once("SIGINT", () => resolve()));
  console.log("draining");
  await started.drain();
}

async function client(artifact: string): Promise<void> {
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
if (mode === "agent") await agent();
else if (mode === "client" && artifact) await client(artifact);
else {
  console.error("usage: remote-demo.ts agent | remote-demo.ts client <file.ociapp>");
  process.exitCode = 1;
}
