import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type {
  ContainerExit,
  ContainerHandle,
  ContainerSpec,
  Engine,
  ListedContainer,
} from "../../src/engines/engine.js";
import { EngineUnavailableError } from "../../src/errors.js";

const ENTRY = fileURLToPath(new URL("./serve-entry.ts", import.meta.url));
export const FIXTURE_APP = fileURLToPath(new URL("../fixtures/behaviours-app/main.js", import.meta.url));

interface FakeContainer {
  spec: ContainerSpec;
  child: ChildProcess | undefined;
  state: "created" | "running" | "exited";
  exit: Promise<ContainerExit>;
  settle: (exit: ContainerExit) => void;
  capturing: boolean;
}

/**
 * An Engine whose "containers" are local child processes running the SDK's real `ociapp serve` on
 * the fixture app, with the socket in the runtime's folder. It lets the pool, instance and
 * connection logic be tested fast and without Docker; the *.engine.test.ts files cover the real one.
 * Containers disappear once they exit, as with AutoRemove.
 */
export class ProcessEngine implements Engine {
  readonly images = new Set<string>();
  /** Which digest loading each path yields. */
  readonly artifacts = new Map<string, string>();
  readonly containers = new Map<string, FakeContainer>();
  loads = 0;
  created = 0;
  /** The most containers that existed (created or running) at once, counted at each create. */
  mostAlive = 0;
  /** Environment added to every process (e.g. to make the fixture hang). */
  extraEnv: Record<string, string> = {};
  /** When set, startContainer runs this command instead (hostile "apps"). */
  command: ((spec: ContainerSpec, socketPath: string) => string[]) | undefined;

  async ping(): Promise<void> {}

  /** OCI runtimes this fake engine "has". */
  readonly runtimes = new Set(["runc"]);

  async checkRuntime(name: string): Promise<void> {
    if (!this.runtimes.has(name))
      throw new EngineUnavailableError(`the process engine has no OCI runtime "${name}"`);
  }

  async hasImage(reference: string): Promise<boolean> {
    return this.images.has(reference);
  }

  async loadImage(path: string): Promise<void> {
    this.loads++;
    await new Promise((resolve) => setTimeout(resolve, 20));
    const digest = this.artifacts.get(path);
    if (digest) this.images.add(digest);
  }

  async createContainer(spec: ContainerSpec): Promise<ContainerHandle> {
    if (!this.images.has(spec.image)) throw new Error(`no such image ${spec.image}`);
    const id = randomBytes(32).toString("hex");
    this.created++;
    let settle!: (exit: ContainerExit) => void;
    const exit = new Promise<ContainerExit>((resolve) => {
      settle = resolve;
    });
    const container: FakeContainer = {
      spec,
      child: undefined,
      state: "created",
      exit,
      settle,
      capturing: true,
    };
    this.containers.set(id, container);
    const alive = [...this.containers.values()].filter((entry) => entry.state !== "exited").length;
    this.mostAlive = Math.max(this.mostAlive, alive);
    return {
      id,
      exit,
      release: () => {
        container.capturing = false;
      },
    };
  }

  async startContainer(id: string): Promise<void> {
    const container = this.containers.get(id);
    if (!container) throw new Error(`no such container ${id}`);
    if (container.state !== "created") throw new Error(`container ${id} was already started`);
    // The runtime listens on host.sock in the container's folder; serve connects to it.
    const socketPath = join(container.spec.socketFolder, "host.sock");
    const argv = this.command
      ? this.command(container.spec, socketPath)
      : [
          process.execPath,
          "--conditions=source",
          "--import",
          "tsx",
          ENTRY,
          "serve",
          "--app",
          `${FIXTURE_APP}#app`,
        ];
    const child = spawn(argv[0] as string, argv.slice(1), {
      env: { ...process.env, ...container.spec.env, OCIAPP_CONNECT: socketPath, ...this.extraEnv },
      stdio: ["ignore", "pipe", "pipe"],
    });
    container.child = child;
    container.state = "running";
    const output = container.spec.output;
    child.stdout?.on("data", (chunk: Buffer) => container.capturing && output.push("stdout", chunk));
    child.stderr?.on("data", (chunk: Buffer) => container.capturing && output.push("stderr", chunk));
    // "close" comes after "exit" and after both pipes ended: the report is complete with the output.
    child.on("close", (code, signal) => {
      container.state = "exited";
      const exitCode = code ?? (signal === "SIGKILL" ? 137 : signal === "SIGTERM" ? 143 : 1);
      output.end();
      // AutoRemove: the container is gone once it has exited.
      setTimeout(() => this.containers.delete(id), 5);
      container.settle({ exitCode, oomKilled: false });
    });
  }

  /** Every signal sent, with when (performance.now()). */
  readonly kills: { id: string; signal: "SIGTERM" | "SIGKILL"; at: number }[] = [];

  async killContainer(id: string, signal: "SIGTERM" | "SIGKILL"): Promise<void> {
    this.kills.push({ id, signal, at: performance.now() });
    const container = this.containers.get(id);
    if (container?.state === "running") container.child?.kill(signal);
  }

  async removeContainer(id: string): Promise<void> {
    const container = this.containers.get(id);
    if (!container) return;
    if (container.state === "running") {
      container.child?.kill("SIGKILL");
      await container.exit;
    } else if (container.state === "created") {
      container.state = "exited";
      container.settle({ exitCode: null, oomKilled: false });
    }
    this.containers.delete(id);
  }

  /** Labels baked into each image, by digest (an image may carry dev.ociapp.* labels of its own). */
  readonly imageLabelsOf = new Map<string, Record<string, string>>();

  async imageLabels(reference: string): Promise<Record<string, string>> {
    return this.imageLabelsOf.get(reference) ?? {};
  }

  async listContainers(labels: Record<string, string>): Promise<ListedContainer[]> {
    return [...this.containers.entries()]
      .filter(([, container]) =>
        Object.entries(labels).every(([key, value]) => container.spec.labels[key] === value),
      )
      .map(([id, container]) => ({
        id,
        state: container.state,
        labels: container.spec.labels,
        image: container.spec.image,
      }));
  }

  /** Kills a running container's process, as `docker kill` would. */
  kill(id: string): void {
    this.containers.get(id)?.child?.kill("SIGKILL");
  }
}
