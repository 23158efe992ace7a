import type { ResolvedContainerOptions } from "../options.js";
import type { OutputStream } from "./output.js";

/** Where an engine writes a container's output: the runtime's OutputPipeline. */
export interface OutputSink {
  push(stream: OutputStream, chunk: Buffer): void;
  /** The container's streams ended (it exited). */
  end(): void;
}

/** What the runtime asks the engine to create: one app container serving one socket folder. */
export interface ContainerSpec {
  name: string;
  /** Image reference: the artifact's manifest digest ("sha256:..."). */
  image: string;
  env: Record<string, string>;
  labels: Record<string, string>;
  /**
   * Host folder to bind-mount read-only at /run/ociapp: it holds host.sock, the socket the runtime
   * listens on, which the app connects to (OCIAPP_CONNECT in `env`).
   */
  socketFolder: string;
  container: ResolvedContainerOptions;
  /** Receives the container's stdout and stderr for its whole life; always drained. */
  output: OutputSink;
}

/** How a container ended, as the engine reported it. */
export interface ContainerExit {
  /** null when the engine could not say (it went away, or the container vanished unseen). */
  exitCode: number | null;
  /** True when the kernel's OOM killer ended it (false also when the engine could not say). */
  oomKilled: boolean;
}

/** A created (not yet started) container whose exit is already being watched. */
export interface ContainerHandle {
  readonly id: string;
  /**
   * Settles once the engine's report of the exit is complete (exit code and OOM flag) and the
   * container's output has ended, so everything it wrote is in the sink; never rejects. On a wedged
   * engine it may take long or never settle: the runtime bounds its wait (exitReportTimeout).
   */
  readonly exit: Promise<ContainerExit>;
  /** Stops reading the container's output and watching its exit (it is gone, or being removed). */
  release(): void;
}

export interface ListedContainer {
  id: string;
  state: string;
  labels: Record<string, string>;
  /** The image it runs (an ID the engine's image calls accept). */
  image: string;
}

/**
 * The few engine operations the runtime needs. {@link DockerEngine} implements it over the Docker
 * Engine API; tests use in-process fakes. None of these is called on the warm path.
 */
export interface Engine {
  /** Resolves when the engine answers and can run the runtime's containers; else EngineUnavailableError. */
  ping(signal?: AbortSignal): Promise<void>;
  hasImage(reference: string, signal?: AbortSignal): Promise<boolean>;
  /**
   * Resolves when the engine can run containers with the OCI runtime `name` ("runc", "runsc");
   * else EngineUnavailableError naming how to register it.
   */
  checkRuntime(name: string, signal?: AbortSignal): Promise<void>;
  /** Streams an image tarball to the engine. The runtime bounds the whole load; an engine may bound idle time. */
  loadImage(path: string, signal?: AbortSignal): Promise<void>;
  /**
   * Creates the container (removed by the engine once it exits), arms its exit watch and starts
   * draining its output into `spec.output`, all before it starts.
   */
  createContainer(spec: ContainerSpec, signal?: AbortSignal): Promise<ContainerHandle>;
  startContainer(id: string, signal?: AbortSignal): Promise<void>;
  /** Sends a signal; a container that is already gone is not an error. `abort` ends the request. */
  killContainer(id: string, signal: "SIGTERM" | "SIGKILL", abort?: AbortSignal): Promise<void>;
  /** Force-removes the container and resolves once it is gone; a container already gone is not an error. */
  removeContainer(id: string, abort?: AbortSignal): Promise<void>;
  /** Containers (running or not) carrying every given label. */
  listContainers(labels: Record<string, string>): Promise<ListedContainer[]>;
  /** The labels an image's own config carries (a container inherits them unless it sets its own). */
  imageLabels(reference: string): Promise<Record<string, string>>;
}
