import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../../../ociapp-build/src/cli.js";
import {
  AgentError,
  DigestMismatchError,
  ForbiddenError,
  RemoteExecutor,
  UnknownArtifactError,
} from "../../src/index.js";
import { hashToken } from "../../src/remote/agent/auth.js";
import { rejection } from "../support/outcomes.js";
import { startTestAgent, type TestAgent, TOKENS } from "./support/agents.js";
import { writeArtifact } from "./support/artifacts.js";
import { makePki, type TestPki } from "./support/certs.js";

// The registry path against a real registry: Debian's docker-registry (the CNCF distribution
// server), started on 127.0.0.1 by scripts/registry.sh with throwaway storage and htpasswd
// credentials, stopped after. ociapp-build push puts artifacts there; an agent pulls what a token's
// registries hold, verifying every digest.

const run = promisify(execFile);
const SCRIPT = fileURLToPath(new URL("../../../../scripts/registry.sh", import.meta.url));
const STATE = join(tmpdir(), `ociapp-registry-test-${process.pid}`);
const PORT = String(15_000 + (process.pid % 5_000));
const ENV = { ...process.env, OCIAPP_REGISTRY_STATE: STATE, OCIAPP_REGISTRY_PORT: PORT };
const PULLER = "puller-token-0123456789";

// The script installs the registry with apt as root; elsewhere it must be installed already.
const canRun = process.getuid?.() === 0 || existsSync("/usr/bin/docker-registry");

describe.skipIf(!canRun)("artifacts through a real registry", () => {
  let pki: TestPki;
  let work: string;
  let password: string;
  let test: TestAgent | undefined;
  const repository = `ociapp-test/echo-${randomBytes(4).toString("hex")}`;
  const registry = `127.0.0.1:${PORT}`;
  const clients: RemoteExecutor[] = [];

  beforeAll(async () => {
    await run("bash", [SCRIPT, "up"], { env: ENV, timeout: 400_000 });
    password = (await readFile(join(STATE, "password"), "utf8")).trim();
    work = await mkdtemp(join(tmpdir(), "registry-test-"));
    pki = await makePki(work);
  }, 420_000);

  afterAll(async () => {
    await run("bash", [SCRIPT, "down"], { env: ENV, timeout: 60_000 });
    await rm(work, { recursive: true, force: true });
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((client) => client.close()));
    await test?.stop();
    test = undefined;
  });

  async function push(file: string, target: string) {
    let stdout = "";
    let stderr = "";
    const code = await runCli(["node", "ociapp-build", "push", file, target, "--plain-http", "--json"], {
      stdout: { write: (chunk: string) => (stdout += chunk) },
      stderr: { write: (chunk: string) => (stderr += chunk) },
    });
    return { code, stdout, stderr };
  }

  async function agentWithRegistry(registryPassword = password) {
    const passwordFile = join(work, `password-${randomBytes(3).toString("hex")}`);
    await writeFile(passwordFile, registryPassword);
    test = await startTestAgent(pki, {
      registries: [
        {
          name: "local",
          url: `http://${registry}`,
          repositories: [repository],
          username: "ociapp",
          passwordFile,
        },
      ],
      tokens: [
        { id: "puller", sha256: hashToken(PULLER), scopes: { registries: ["local"] } },
        { id: "admin", sha256: hashToken(TOKENS.admin), scopes: { digests: ["*"], upload: true } },
      ],
    });
    return test;
  }

  function client(token: string): RemoteExecutor {
    const made = new RemoteExecutor({ agents: [test?.agent.url as string], token, ca: pki.ca });
    clients.push(made);
    return made;
  }

  it("ociapp-build push uploads the blobs once and puts the manifest by digest and tag", async () => {
    const artifact = await writeArtifact(join(work, "pushed.ociapp"), "pushed");
    process.env.OCIAPP_REGISTRY_USERNAME = "ociapp";
    process.env.OCIAPP_REGISTRY_PASSWORD = password;
    try {
      const first = await push(artifact.path, `${registry}/${repository}:v1`);
      expect(first.stderr).toBe("");
      expect(first.code).toBe(0);
      expect(JSON.parse(first.stdout)).toEqual({
        reference: `${registry}/${repository}@${artifact.digest}`,
        digest: artifact.digest,
        blobs: 3,
        uploaded: 3,
      });
      const again = JSON.parse((await push(artifact.path, `${registry}/${repository}:v1`)).stdout);
      expect(again.uploaded).toBe(0);
      process.env.OCIAPP_REGISTRY_PASSWORD = "wrong";
      const denied = await push(artifact.path, `${registry}/${repository}:v2`);
      expect(denied.code).toBe(1);
      expect(denied.stderr).toMatch(/^ociapp-build: error: .*HTTP 401 \(check the credentials\)\n$/);
    } finally {
      delete process.env.OCIAPP_REGISTRY_USERNAME;
      delete process.env.OCIAPP_REGISTRY_PASSWORD;
    }
  });

  it("an agent pulls a digest from the token's registry, verifies it, and runs it", async () => {
    const artifact = await writeArtifact(join(work, "pulled.ociapp"), "pulled");
    process.env.OCIAPP_REGISTRY_USERNAME = "ociapp";
    process.env.OCIAPP_REGISTRY_PASSWORD = password;
    expect((await push(artifact.path, `${registry}/${repository}`)).code).toBe(0);
    delete process.env.OCIAPP_REGISTRY_PASSWORD;
    const agent = await agentWithRegistry();
    const remote = client(PULLER);
    expect(await remote.execute(artifact.digest, { op: "echo", value: "pulled" })).toMatchObject({
      value: "pulled",
    });
    expect(await readdir(join(agent.store, "artifacts"))).toEqual([`${artifact.digest.slice(7)}.ociapp`]);
    expect(await remote.execute(artifact.digest, { op: "echo", value: 2 })).toMatchObject({ value: 2 });
    expect(agent.audit.filter((record) => record.outcome === "ok").length).toBe(2);
    // Not in the registry: 404; the token has no digest scope, so a path (upload) is 403.
    const absent = await writeArtifact(join(work, "absent.ociapp"), "absent");
    expect(await rejection(remote.execute(absent.digest, { op: "echo", value: 1 }))).toBeInstanceOf(
      UnknownArtifactError,
    );
    expect(await rejection(remote.execute(absent.path, { op: "echo", value: 1 }))).toBeInstanceOf(
      ForbiddenError,
    );
    // Uploaded by someone else, but not in the registry: still not runnable with a registry scope.
    await client(TOKENS.admin).warm(absent.path);
    expect(await rejection(remote.execute(absent.digest, { op: "echo", value: 1 }))).toBeInstanceOf(
      UnknownArtifactError,
    );
  });

  it("a blob tampered with in the registry's storage is refused (409) and nothing is kept", async () => {
    const artifact = await writeArtifact(join(work, "tampered.ociapp"), "tampered");
    process.env.OCIAPP_REGISTRY_USERNAME = "ociapp";
    process.env.OCIAPP_REGISTRY_PASSWORD = password;
    expect((await push(artifact.path, `${registry}/${repository}`)).code).toBe(0);
    delete process.env.OCIAPP_REGISTRY_PASSWORD;
    // Flip a byte of the first layer's data in the registry's own storage.
    const manifest = JSON.parse(
      (
        await readFile(
          join(
            STATE,
            "storage/docker/registry/v2/blobs/sha256",
            artifact.digest.slice(7, 9),
            artifact.digest.slice(7),
            "data",
          ),
        )
      ).toString(),
    ) as { layers: { digest: string }[] };
    const layer = manifest.layers[0]?.digest.slice(7) as string;
    const data = join(STATE, "storage/docker/registry/v2/blobs/sha256", layer.slice(0, 2), layer, "data");
    const original = await readFile(data);
    const changed = Buffer.from(original);
    changed[0] = (changed[0] ?? 0) ^ 0xff;
    await writeFile(data, changed);
    try {
      const agent = await agentWithRegistry();
      const failure = await rejection(client(PULLER).execute(artifact.digest, { op: "echo", value: 1 }));
      expect(failure).toBeInstanceOf(DigestMismatchError);
      expect(await readdir(join(agent.store, "artifacts"))).toEqual([]);
      expect(await readdir(join(agent.store, "incoming"))).toEqual([]);
    } finally {
      await writeFile(data, original);
    }
  });

  it("wrong registry credentials in the agent's config give AgentError, not a hang", async () => {
    const artifact = await writeArtifact(join(work, "creds.ociapp"), "creds");
    await agentWithRegistry("not-the-password");
    const failure = await rejection(client(PULLER).execute(artifact.digest, { op: "echo", value: 1 }));
    expect(failure).toBeInstanceOf(AgentError);
    expect((failure as Error).message).toMatch(/HTTP 401/);
  });
});
