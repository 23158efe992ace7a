import type { ResolvedContainerOptions } from "../options.js";

/** What the runtime asks the engine to create: one app container serving one socket folder. */
export interface ContainerSpec {
  name: string;
  /** Image reference: the artifact's manifest digest ("sha256:..."). */
  image: string;
  env: Record<string, string>;
  labels: Record<string, string>;
  /** Host folder bind-mounted at /run/ociapp; the app creates its socket there. */
  socketFolder: string;
  container: ResolvedContainerOptions;
}

export interface ContainerExit {
  /** null when the engine could not say (it went away, or the container vanished unseen). */
  exitCode: number | null;
  oomKilled: boolean;
}

/** A created (not yet started) container whose exit is already being watched. */
export interface ContainerHandle {
  readonly id: string;
  /** Settles once, when the container has exited; never rejects. */
  readonly exit: Promise<ContainerExit>;
  /** The last lines the container wrote while its output was captured (bounded). */
  recentOutput(): string;
  /** Stops capturing output: called once the app is ready, so a chatty app costs the host nothing. */
  detachOutput(): void;
}

export interface ListedContainer {
  id: string;
  state: string;
  labels: Record<string, string>;
}

/**
 * The few engine operations the runtime needs. {@link DockerEngine} implements it over the Docker
 * Engine API; tests use in-process fakes. None of these is called on the warm path.
 */
export interface Engine {
  /** Resolves when the engine answers and can run the runtime's containers; else EngineUnavailableError. */
  ping(signal?: AbortSignal): Promise<void>;
  hasImage(reference: string, signal?: AbortSignal): Promise<boolean>;
  /** Streams an image tarball to the engine. The runtime bounds the whole load; an engine may bound idle time. */
  loadImage(path: string, signal?: AbortSignal): Promise<void>;
  /** Creates the container (removed by the engine once it exits), arms its exit watch and output capture. */
  createContainer(spec: ContainerSpec, signal?: AbortSignal): Promise<ContainerHandle>;
  startContainer(id: string, signal?: AbortSignal): Promise<void>;
  /** Sends a signal; a container that is already gone is not an error. `abort` ends the request. */
  killContainer(id: string, signal: "SIGTERM" | "SIGKILL", abort?: AbortSignal): Promise<void>;
  /** Force-removes the container and resolves once it is gone; a container already gone is not an error. */
  removeContainer(id: string, abort?: AbortSignal): Promise<void>;
  /** Containers (running or not) carrying every given label. */
  listContainers(labels: Record<string, string>): Promise<ListedContainer[]>;
}

/** Keeps the last `maxBytes` of a byte stream and returns its last `maxLines` lines. */
export class OutputTail {
  private chunks: Buffer[] = [];
  private bytes = 0;

  constructor(
    private readonly maxBytes = 16 * 1024,
    private readonly maxLines = 40,
  ) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    while (this.bytes - (this.chunks[0]?.length ?? 0) >= this.maxBytes && this.chunks.length > 1) {
      this.bytes -= this.chunks.shift()?.length ?? 0;
    }
    if (this.chunks.length > 64) {
      const joined = Buffer.concat(this.chunks);
      const kept = joined.subarray(Math.max(0, joined.length - this.maxBytes));
      this.chunks = [kept];
      this.bytes = kept.length;
    }
  }

  text(): string {
    const joined = Buffer.concat(this.chunks);
    const kept = joined.subarray(Math.max(0, joined.length - this.maxBytes)).toString("utf8");
    const lines = kept.split("\n");
    if (lines.at(-1) === "") lines.pop();
    return lines.slice(-this.maxLines).join("\n");
  }
}
