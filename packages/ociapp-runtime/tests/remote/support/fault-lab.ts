import { type ChildProcess, execFile } from "node:child_process";
import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { hashToken } from "../../../src/remote/agent/auth.js";
import type { AuditRecord } from "../../../src/remote/agent/metrics.js";
import type { Namespace } from "./netns.js";

const run = promisify(execFile);
const AGENT_ENTRY = fileURLToPath(new URL("./agent-entry.ts", import.meta.url));
const DRIVER_ENTRY = fileURLToPath(new URL("./client-driver.ts", import.meta.url));
const NODE = [process.execPath, "--conditions=source", "--import", "tsx"];

export interface DriverAnswer {
  id: number;
  ok: boolean;
  value?: unknown;
  error?: { name: string; code?: string; message: string };
  ms: number;
}

/** A RemoteExecutor in a process inside `namespace`, driven over its stdin and stdout. */
export class Driver {
  private next = 0;
  private readonly waiting = new Map<number, (answer: DriverAnswer) => void>();
  readonly exited: Promise<void>;

  constructor(readonly process: ChildProcess) {
    const lines = createInterface({ input: process.stdout as NodeJS.ReadableStream });
    lines.on("line", (line) => {
      if (!line.startsWith("{")) return;
      const answer = JSON.parse(line) as DriverAnswer;
      this.waiting.get(answer.id)?.(answer);
      this.waiting.delete(answer.id);
    });
    process.stderr?.on("data", () => undefined);
    this.exited = new Promise((resolve) => process.once("exit", () => resolve()));
    // A driver that dies (a crash, a syntax error in what it loads) answers what it was sent with an
    // error, instead of leaving the test waiting for its timeout.
    void this.exited.then(() => {
      for (const [id, resolve] of this.waiting) {
        resolve({
          id,
          ok: false,
          error: { name: "DriverExited", message: "the driver process exited" },
          ms: 0,
        });
      }
      this.waiting.clear();
    });
  }

  static start(namespace: Namespace, options: Record<string, unknown>): Driver {
    return new Driver(
      namespace.spawn([...NODE, DRIVER_ENTRY], {
        ...process.env,
        OCIAPP_DRIVER_OPTIONS: JSON.stringify(options),
      }),
    );
  }

  send(command: Record<string, unknown>): Promise<DriverAnswer> {
    const id = ++this.next;
    if (this.process.exitCode !== null || this.process.signalCode !== null) {
      return Promise.resolve({
        id,
        ok: false,
        error: { name: "DriverExited", message: "the driver process exited" },
        ms: 0,
      });
    }
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.process.stdin?.write(`${JSON.stringify({ id, ...command })}\n`);
    });
  }

  execute(artifact: string, request: unknown, timeout?: number): Promise<DriverAnswer> {
    return this.send({ op: "execute", artifact, request, ...(timeout === undefined ? {} : { timeout }) });
  }

  async stop(): Promise<void> {
    if (this.process.exitCode === null && this.process.signalCode === null) this.process.kill("SIGKILL");
    await this.exited;
  }
}

export const ADMIN = "fault-admin-token-0123456789";
export const NARROW = "fault-narrow-token-0123456789";

/** One agent process (`ociapp-runtime serve`) in its namespace, with its audit lines collected. */
export class AgentProcess {
  process: ChildProcess | undefined;
  readonly audit: AuditRecord[] = [];
  readonly store: string;
  private readonly config: string;

  constructor(
    readonly name: string,
    readonly namespace: Namespace,
    readonly address: string,
    work: string,
    private readonly pki: { certPath: string; keyPath: string },
  ) {
    this.store = join(work, `${name}-store`);
    this.config = join(work, `${name}.json`);
  }

  get url(): string {
    return `https://${this.address}:8443`;
  }

  async start(): Promise<void> {
    const socketDir = join("/run/ociapp-ft", this.name);
    await mkdir(socketDir, { recursive: true, mode: 0o700 });
    await writeFile(
      this.config,
      JSON.stringify({
        listen: { host: this.address, port: 8443 },
        tls: { cert: this.pki.certPath, key: this.pki.keyPath },
        store: this.store,
        tokens: [
          {
            id: "admin",
            sha256: hashToken(ADMIN),
            scopes: { digests: ["*"], upload: true, drain: true, settings: ["timeout"] },
          },
          { id: "narrow", sha256: hashToken(NARROW), scopes: { digests: [`sha256:${"0".repeat(64)}`] } },
        ],
        runtime: { socketDir, shutdownTimeout: 3_000, startupTimeout: 60_000, maxConcurrency: 64 },
        limits: { drainTimeout: 15_000 },
      }),
    );
    const child = this.namespace.spawn([...NODE, AGENT_ENTRY, "serve", "--config", this.config]);
    this.process = child;
    const lines = createInterface({ input: child.stderr as NodeJS.ReadableStream });
    const listening = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`agent ${this.name} did not listen within 60 s`)),
        60_000,
      );
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`agent ${this.name} exited (${code}) before listening`));
      });
      lines.on("line", (line) => {
        if (line.includes("listening on")) {
          clearTimeout(timer);
          resolve();
        }
        if (line.startsWith('{"audit"')) this.audit.push(JSON.parse(line) as AuditRecord);
        if (process.env.OCIAPP_FAULTS_VERBOSE) console.log(`[${this.name}] ${line}`);
      });
    });
    child.stdout?.on("data", () => undefined);
    await listening;
  }

  /** Ends the process with `signal` and waits for its exit (SIGKILL after `graceMs`). */
  async stop(signal: NodeJS.Signals = "SIGTERM", graceMs = 30_000): Promise<void> {
    const child = this.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await exited;
    clearTimeout(timer);
  }

  executes(outcome?: string): AuditRecord[] {
    return this.audit.filter(
      (record) =>
        record.route === "POST /v1/artifacts/execute" &&
        (outcome === undefined || record.outcome === outcome),
    );
  }

  async incoming(): Promise<string[]> {
    return readdir(join(this.store, "incoming")).catch(() => []);
  }

  async held(): Promise<string[]> {
    return readdir(join(this.store, "artifacts")).catch(() => []);
  }
}

/** Containers an agent's runtime made for `digest` (by label), for the clean-up check. */
export async function containersOf(digest: string): Promise<string[]> {
  const { stdout } = await run("docker", ["ps", "-aq", "--filter", `label=dev.ociapp.artifact=${digest}`]);
  return stdout.split("\n").filter(Boolean);
}

export async function removeTree(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true });
}
