import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRuntime } from "../../../src/internal/create-runtime.js";
import type { ArtifactPuller } from "../../../src/remote/agent/handlers.js";
import {
  Agent,
  type AgentConfig,
  type AuditRecord,
  hashToken,
  parseAgentConfig,
} from "../../../src/remote/agent/index.js";
import type { Runtime } from "../../../src/runtime.js";
import { ArtifactProcessEngine } from "./artifacts.js";
import type { TestPki } from "./certs.js";

export const TOKENS = {
  /** May run and upload anything, change the timeout, drain, read /metrics. */
  admin: "admin-token-0123456789",
  /** May run one digest only (set per test), no upload, no settings. */
  narrow: "narrow-token-0123456789",
};

export interface TestAgent {
  agent: Agent;
  runtime: Runtime;
  engine: ArtifactProcessEngine;
  audit: AuditRecord[];
  store: string;
  stop(): Promise<void>;
}

/** Agent config for tests: TLS from `pki` (or none), the two tokens, small limits where given. */
export function testConfig(
  pki: TestPki | undefined,
  store: string,
  overrides: Record<string, unknown> = {},
): AgentConfig {
  return parseAgentConfig({
    listen: { host: "127.0.0.1", port: 0 },
    ...(pki ? { tls: { cert: pki.certPath, key: pki.keyPath } } : {}),
    store,
    tokens: [
      {
        id: "admin",
        sha256: hashToken(TOKENS.admin),
        scopes: { digests: ["*"], upload: true, drain: true, settings: ["timeout"], metrics: true },
      },
      { id: "narrow", sha256: hashToken(TOKENS.narrow), scopes: { digests: [`sha256:${"0".repeat(64)}`] } },
    ],
    ...overrides,
  });
}

/** An agent in this process over the process engine (real `ociapp serve` processes, no Docker). */
export async function startTestAgent(
  pki: TestPki | undefined,
  overrides: Record<string, unknown> = {},
  options: { insecureLoopback?: boolean; shutdownTimeout?: number; puller?: ArtifactPuller } = {},
): Promise<TestAgent> {
  const store = await mkdtemp(join(tmpdir(), "agent-store-"));
  const socketDir = await mkdtemp(join(tmpdir(), "agent-rt-"));
  const engine = new ArtifactProcessEngine();
  const runtime = createRuntime(
    { engine, socketDir, startupTimeout: 20_000, shutdownTimeout: options.shutdownTimeout ?? 5_000 },
    {},
  );
  const audit: AuditRecord[] = [];
  const agent = await Agent.start({
    config: testConfig(pki, store, overrides),
    executor: runtime,
    audit: (record) => audit.push(record),
    insecureLoopback: options.insecureLoopback === true,
    ...(options.puller ? { puller: options.puller } : {}),
  });
  return {
    agent,
    runtime,
    engine,
    audit,
    store,
    async stop() {
      await agent.close();
      await rm(store, { recursive: true, force: true });
      await rm(socketDir, { recursive: true, force: true });
    },
  };
}
