import type { ResolvedContainerOptions } from "../options/container.js";
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
  /**
   * The artifact whose image the container runs: its manifest digest ("sha256:..."). The engine maps
   * it to the reference it loaded the image under (never a name the artifact chose).
   */
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

/** How an artifact is loaded. */
export interface LoadImageOptions {
  /** Ends the load; what it left in the engine is removed. */
  signal?: AbortSignal;
  /**
   * Most bytes the artifact's blobs may unpack to in total (layers decompressed), measured while the
   * artifact streams to the engine; past it the load is aborted with ArtifactError.
   */
  maxUnpackedBytes: number;
  /**
   * Called as the artifact's bytes go to the engine (at most every 250 ms, and once at the end):
   * bytes of the file sent so far, and the file's size.
   */
  onProgress?: (sentBytes: number, totalBytes: number) => void;
}

/** An image under the runtime-owned names, as image retention sees it. */
export interface EngineImage {
  /** The engine's image ID. */
  id: string;
  /** The runtime's names on it, e.g. `ociapp.invalid/artifact:sha256-<hex>` (see images/names.ts). */
  names: string[];
  /** Manifest digests of the artifacts it is the image of. */
  artifacts: string[];
  /** Bytes, as the engine reports the image's size (layers shared with other images counted in each). */
  size: number;
  /** ms since the epoch of the newest last-used record any runtime left on it; 0 when there is none. */
  lastUsed: number;
  /** True when a container (in any state) was created from it. */
  inUse: boolean;
}

/**
 * The few engine operations the runtime needs. {@link DockerEngine} implements it over the Docker
 * Engine API; tests use in-process fakes. None of these is called on the warm path.
 */
export interface Engine {
  /** Resolves when the engine answers and can run the runtime's containers; else EngineUnavailableError. */
  ping(signal?: AbortSignal): Promise<void>;
  /**
   * Whether the engine holds the image of the artifact whose manifest digest is `digest`, complete,
   * under the reference this engine loads it under.
   */
  hasImage(digest: string, signal?: AbortSignal): Promise<boolean>;
  /**
   * Resolves when the engine can run containers with the OCI runtime `name` ("runc", "runsc");
   * else EngineUnavailableError naming how to register it.
   */
  checkRuntime(name: string, signal?: AbortSignal): Promise<void>;
  /**
   * Loads the artifact at `path` (an OCI image-layout tarball whose manifest digest is `digest`) under
   * a runtime-owned reference, never under a name the artifact carries, and creates, moves or removes
   * no other tag. Resolves once the image is complete under that reference; a failed load leaves
   * nothing behind. Rejects with ArtifactError (the file, its size budget, or the engine refused it)
   * or EngineUnavailableError. The runtime bounds the whole load; an engine may bound idle time.
   */
  loadImage(path: string, digest: string, options: LoadImageOptions): Promise<void>;
  /**
   * Records, where every runtime on this engine sees it, that the artifact's image is in use now (the
   * shared last-used record image retention reads). Best effort; optional: without it (and without
   * listImages and removeImageNames) a runtime removes no image.
   */
  markImageUsed?(digest: string, signal?: AbortSignal): Promise<void>;
  /** The images that carry a runtime-owned name, with their sizes, last use and whether a container uses them. */
  listImages?(signal?: AbortSignal): Promise<EngineImage[]>;
  /**
   * Removes the given runtime-owned names (never another), in order, each only when no container uses
   * the image (the engine refuses); removing an image's last name removes the image. Resolves true
   * when every name is gone, false when the engine refused one because a container uses it.
   */
  removeImageNames?(names: string[], signal?: AbortSignal): Promise<boolean>;
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

/** Whether a value has the Engine methods the runtime calls (a constructor option check). */
export function isEngine(value: unknown): value is Engine {
  const engine = value as Partial<Engine>;
  return (
    typeof engine === "object" &&
    engine !== null &&
    typeof engine.createContainer === "function" &&
    typeof engine.startContainer === "function" &&
    typeof engine.removeContainer === "function"
  );
}
