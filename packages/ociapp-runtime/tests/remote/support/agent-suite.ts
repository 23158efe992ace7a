import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll } from "vitest";
import { startTestAgent, type TestAgent } from "./agents.js";
import { makePki, type TestPki } from "./certs.js";

/** What an agent test file shares: its folder and PKI (made once), and one agent at a time. */
export interface AgentSuite {
  readonly pki: TestPki;
  readonly work: string;
  /** Starts an agent over TLS with this suite's PKI (startTestAgent); it is stopped after the test. */
  start(
    overrides?: Parameters<typeof startTestAgent>[1],
    options?: Parameters<typeof startTestAgent>[2],
  ): Promise<TestAgent>;
}

/**
 * Registers the hooks most agent test files repeat (a work folder and a PKI before all, the test's
 * agent stopped after each, the folder removed after all) and gives what they make.
 */
export function agentSuite(prefix: string): AgentSuite {
  let pki: TestPki | undefined;
  let work: string | undefined;
  let running: TestAgent | undefined;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), prefix));
    pki = await makePki(work);
  });
  afterEach(async () => {
    await running?.stop();
    running = undefined;
  });
  afterAll(async () => {
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });
  const made = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`agentSuite: the ${what} is made in beforeAll`);
    return value;
  };
  return {
    get pki() {
      return made(pki, "PKI");
    },
    get work() {
      return made(work, "work folder");
    },
    async start(overrides = {}, options = {}) {
      running = await startTestAgent(made(pki, "PKI"), overrides, options);
      return running;
    },
  };
}
