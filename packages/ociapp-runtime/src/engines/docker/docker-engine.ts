import Dockerode from "dockerode";
import { ArtifactError, EngineUnavailableError } from "../../errors.js";
import { CONTAINER_FOLDER, HOME_DIR, HOME_TMPFS } from "../../host/runtime-dir.js";
import { artifactReference } from "../../images/names.js";
import { within } from "../../util/timers.js";
import type {
  ContainerExit,
  ContainerHandle,
  ContainerSpec,
  Engine,
  EngineImage,
  ListedContainer,
  LoadImageOptions,
} from "../engine.js";
import { describe, engineError, statusOf, untilAborted } from "./errors.js";
import { ContainerEvents } from "./events.js";
import { detectFlavour, type EngineFacts, type EngineFlavour } from "./flavour.js";
import { loadArtifact } from "./image-load.js";
import {
  holdsArtifact,
  type ImageContext,
  inspectImage,
  listRuntimeImages,
  markUsed,
  removeName,
} from "./images.js";
import { AttachDemuxer, destroy, unref } from "./streams.js";
import { armWait } from "./wait.js";

/**
 * After the wait answer, how long the `die` event may trail it while the event stream is open. They
 * are written by the same exit handler, so it is usually a millisecond; the bound only matters for a
 * stream that died unnoticed. Unref'd.
 */
const DIE_EVENT_GRACE_MS = 5_000;
/** After the exit, how long the attach stream may take to deliver the last output and end. Unref'd. */
const OUTPUT_END_GRACE_MS = 5_000;

/**
 * The Docker Engine API through dockerode: Docker Engine 25+ with the containerd or the classic image
 * store, or Podman 4+ (its Docker-compatible service). ping() tells them apart (`/info`, `/version`),
 * and the image operations adapt: artifacts are loaded under runtime-owned names
 * (`ociapp.invalid/artifact:sha256-<manifest hex>`, images/names.ts) that mean the same on every
 * store, with a docker-archive manifest.json added to the stream for the classic store
 * (image-load.ts). Container creation names the image by that reference.
 *
 * Containers are created with AutoRemove, so the engine removes them even when no runtime is left
 * to do it, and an inspect after the exit finds nothing. Their exit is reported from what the engine
 * sends while they run: a wait request armed before start (the exit code), the event stream (`oom`
 * then `die`, see ContainerEvents), and the attach stream (every byte of output, until it ends).
 */
export class DockerEngine implements Engine {
  readonly docker: Dockerode;
  private ready: Promise<void> | undefined;
  private detected: EngineFlavour | undefined;
  private readonly events: ContainerEvents;
  private readonly volumes = new Map<string, string[]>();
  /** How errors name this engine: its socket or host. */
  private readonly where: string;

  /** Takes dockerode options (default: the local socket, or DOCKER_HOST) or a Dockerode instance. */
  constructor(options?: Dockerode.DockerOptions | Dockerode) {
    this.docker = options instanceof Dockerode ? options : new Dockerode(options);
    this.where = describeEndpoint(this.docker);
    this.events = new ContainerEvents(this.docker, this.where);
  }

  ping(signal?: AbortSignal): Promise<void> {
    if (!this.ready) {
      this.ready = this.checkEngine(signal);
      this.ready.catch(() => {
        this.ready = undefined;
      });
    }
    return this.ready;
  }

  /**
   * The engine's kind and image store, known once ping() resolved (docs/engines.md): "containerd"
   * (Docker with the containerd image store), "classic" (Docker's classic store) or "podman".
   */
  get flavour(): EngineFlavour | undefined {
    return this.detected;
  }

  private async checkEngine(signal?: AbortSignal): Promise<void> {
    let facts: EngineFacts;
    try {
      const [info, version] = await untilAborted(
        Promise.all([this.docker.info(), this.docker.version()]),
        signal,
        "answer an info request",
      );
      signal?.throwIfAborted();
      facts = { info: info as EngineFacts["info"], version: version as EngineFacts["version"] };
    } catch (error) {
      throw engineError("answer an info request", error, this.where);
    }
    this.detected = detectFlavour(facts, this.where);
  }

  async checkRuntime(name: string, signal?: AbortSignal): Promise<void> {
    let info: { Runtimes?: Record<string, unknown> };
    try {
      info = await untilAborted(this.docker.info(), signal, "answer an info request");
    } catch (error) {
      throw engineError("answer an info request", error, this.where);
    }
    if (!info.Runtimes || !(name in info.Runtimes)) {
      const known = Object.keys(info.Runtimes ?? {}).join(", ") || "none";
      throw new EngineUnavailableError(
        `${this.where} has no OCI runtime "${name}" (it has: ${known}); register it under "runtimes" in /etc/docker/daemon.json${
          name === "runsc"
            ? ' ({"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--platform=systrap", "--network=none", "--host-uds=open"]}}; scripts/engine.sh runsc does it)'
            : ""
        } and reload dockerd (SIGHUP)`,
      );
    }
  }

  /** The image operations' view of this engine; pings first (the flavour decides the load format). */
  private async images(signal?: AbortSignal): Promise<ImageContext> {
    await this.ping(signal);
    return { docker: this.docker, where: this.where, flavour: this.detected as EngineFlavour };
  }

  async hasImage(digest: string, signal?: AbortSignal): Promise<boolean> {
    // The inspect does not wait for the first ping: on a new engine both round trips go out at once
    // (a cold start waits for them), and the answer is judged once the flavour is known.
    const pinged = this.ping(signal);
    pinged.catch(() => undefined);
    const info = await inspectImage(
      { docker: this.docker, where: this.where },
      artifactReference(digest),
      signal,
    );
    await pinged;
    return holdsArtifact(this.detected as EngineFlavour, info, digest);
  }

  async loadImage(path: string, digest: string, options: LoadImageOptions): Promise<void> {
    return loadArtifact(await this.images(options.signal), path, digest, options);
  }

  async markImageUsed(digest: string, signal?: AbortSignal): Promise<void> {
    return markUsed(await this.images(signal), digest, signal);
  }

  async listImages(signal?: AbortSignal): Promise<EngineImage[]> {
    return listRuntimeImages(await this.images(signal), signal);
  }

  async removeImageNames(names: string[], signal?: AbortSignal): Promise<boolean> {
    const context = await this.images(signal);
    for (const name of names) {
      if ((await removeName(context, name, signal)) === "in-use") return false;
    }
    return true;
  }

  async createContainer(spec: ContainerSpec, signal?: AbortSignal): Promise<ContainerHandle> {
    await untilAborted(
      this.events.open(this.detected?.dieEventFilter ?? "die"),
      signal,
      "open its event stream",
    );
    const image = artifactReference(spec.image);
    const volumes = await untilAborted(this.volumesOf(image), signal, `inspect image ${image}`);
    const c = spec.container;
    let container: Dockerode.Container;
    // Not aborted with the caller's signal: an engine that got the request may create the container
    // anyway. The caller stops waiting at once, and a container that appears late is removed (it is
    // never started, so AutoRemove would never remove it).
    const creating = this.docker.createContainer({
      name: spec.name,
      Image: image,
      User: c.user,
      Env: Object.entries(spec.env).map(([key, value]) => `${key}=${value}`),
      Labels: spec.labels,
      AttachStdout: true,
      AttachStderr: true,
      // The image's config is the artifact's: what the runtime did not choose is neutralised (see
      // the README's image config table). No HEALTHCHECK: it would run engine execs at the image's
      // interval, with CPU outside the container's limit.
      Healthcheck: { Test: ["NONE"] },
      // The runtime signals containers itself; a `docker stop` by someone else sends SIGTERM too.
      StopSignal: "SIGTERM",
      HostConfig: {
        AutoRemove: true,
        // Read-only: the container connects to the runtime's socket there and can write nothing.
        Binds: [`${spec.socketFolder}:${CONTAINER_FOLDER}:ro`],
        NetworkMode: c.networkMode,
        ReadonlyRootfs: c.readonlyRootfs,
        // A VOLUME of the image would get an anonymous volume on the engine's disk, writable despite
        // the read-only root: each gets a tmpfs instead, which counts inside the memory limit.
        Tmpfs: { ...volumeTmpfs(volumes), [HOME_DIR]: HOME_TMPFS, ...c.tmpfs },
        CapDrop: c.capDrop,
        SecurityOpt: c.noNewPrivileges ? ["no-new-privileges"] : [],
        Init: c.init,
        Runtime: c.runtime,
        // Swap equal to memory: no swap, so a memory-hungry app is OOM-killed rather than slowed.
        Memory: c.memory,
        MemorySwap: c.memory === 0 ? 0 : c.memory,
        NanoCpus: c.nanoCpus,
        PidsLimit: c.pidsLimit === 0 ? -1 : c.pidsLimit,
        LogConfig: { Type: "json-file", Config: { "max-size": c.logMaxSize, "max-file": "1" } },
      },
    });
    try {
      container = await untilAborted(creating, signal, `create a container of ${spec.image}`);
    } catch (error) {
      if (signal?.aborted) {
        creating.then((late) => this.removeContainer(late.id)).catch(() => undefined);
      }
      this.events.closeIfIdle();
      throw error instanceof EngineUnavailableError
        ? error
        : engineError(`create a container of ${spec.image}`, error, this.where);
    }
    const id = container.id;
    const record = this.events.watch(id);
    // Under gVisor the host's OOM killer kills one of the sandbox's processes and the sandbox hangs
    // (docs/engines.md: 10 minutes until a docker kill): the runtime kills it at its oom event.
    if (c.runtime === "runsc")
      record.onOom = () => void this.killContainer(id, "SIGKILL").catch(() => undefined);
    let attach: NodeJS.ReadableStream | undefined;
    try {
      // Both must be in place before start; they do not depend on each other.
      const [wait, attached] = await untilAborted(
        Promise.all([
          armWait(this.docker, id),
          container.attach({ stream: true, stdout: true, stderr: true }),
        ]),
        signal,
        `watch container ${id}`,
      );
      attach = attached as NodeJS.ReadableStream;
      unref(attach);
      const demuxer = new AttachDemuxer((stream, chunk) => spec.output.push(stream, chunk));
      attach.on("data", (chunk: Buffer) => demuxer.push(chunk));
      const outputEnded = new Promise<void>((resolve) => {
        (attach as NodeJS.ReadableStream).on("end", resolve);
        (attach as NodeJS.ReadableStream).on("close", resolve);
        (attach as NodeJS.ReadableStream).on("error", resolve);
      });
      const exit = (async (): Promise<ContainerExit> => {
        const waited = await wait.exited;
        // The die event completes the report (exit code and the final OOM flag); it may trail the wait.
        const died = await within(record.died, this.events.healthy ? DIE_EVENT_GRACE_MS : 0, true);
        const exitCode = typeof died === "number" ? died : waited;
        await within(outputEnded, OUTPUT_END_GRACE_MS, true);
        spec.output.end();
        this.events.forget(id);
        return { exitCode, oomKilled: record.oom };
      })();
      const stream = attach;
      return {
        id,
        exit,
        release: () => {
          destroy(stream);
          this.events.forget(id);
        },
      };
    } catch (error) {
      if (attach) destroy(attach);
      // A caller that gave up does not wait for the removal (the engine may be wedged).
      const removal = this.removeContainer(id).catch(() => undefined);
      if (!signal?.aborted) await removal;
      this.events.forget(id);
      throw error instanceof EngineUnavailableError
        ? error
        : engineError(`watch container ${id}`, error, this.where);
    }
  }

  /** The image's VOLUME paths (cached per image: an image's config never changes). */
  private async volumesOf(image: string): Promise<string[]> {
    let volumes = this.volumes.get(image);
    if (!volumes) {
      try {
        const info = (await this.docker.getImage(image).inspect()) as {
          Config?: { Volumes?: Record<string, unknown> | null };
        };
        volumes = Object.keys(info.Config?.Volumes ?? {});
      } catch (error) {
        throw engineError(`inspect image ${image}`, error, this.where);
      }
      if (volumes.length > MAX_IMAGE_VOLUMES) {
        throw new ArtifactError(
          image,
          `image ${image} declares ${volumes.length} VOLUMEs; the runtime mounts a tmpfs for each and allows at most ${MAX_IMAGE_VOLUMES}`,
        );
      }
      if (this.volumes.size >= 256) this.volumes.clear();
      this.volumes.set(image, volumes);
    }
    return volumes;
  }

  async startContainer(id: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.docker.getContainer(id).start({ abortSignal: signal });
    } catch (error) {
      throw engineError(`start container ${id}`, error, this.where);
    }
  }

  async killContainer(id: string, signal: "SIGTERM" | "SIGKILL", abort?: AbortSignal): Promise<void> {
    try {
      await this.docker.getContainer(id).kill({ signal, abortSignal: abort });
    } catch (error) {
      const status = statusOf(error);
      // 409: not running (Docker). Podman answers a kill of an exited container with 500 "container
      // state improper" (docs/engines.md): also gone, as far as a kill is concerned.
      if (status === 404 || status === 409 || (status === 500 && /state improper/.test(describe(error))))
        return;
      throw engineError(`send ${signal} to container ${id}`, error, this.where);
    }
  }

  async removeContainer(id: string, abort?: AbortSignal): Promise<void> {
    const container = this.docker.getContainer(id);
    try {
      await container.remove({ force: true, abortSignal: abort });
      return;
    } catch (error) {
      const status = statusOf(error);
      if (status === 404) return;
      if (status !== 409) throw engineError(`remove container ${id}`, error, this.where);
    }
    // 409: AutoRemove is already removing it; wait until it is gone (bounded).
    for (let attempt = 0; attempt < 100; attempt++) {
      abort?.throwIfAborted();
      try {
        await container.inspect({ abortSignal: abort });
      } catch (error) {
        if (statusOf(error) === 404) return;
        throw engineError(`inspect container ${id}`, error, this.where);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new EngineUnavailableError(`container ${id} was still being removed after 10 s`);
  }

  async imageLabels(reference: string): Promise<Record<string, string>> {
    try {
      const info = (await this.docker.getImage(reference).inspect()) as {
        Config?: { Labels?: Record<string, string> | null };
      };
      return info.Config?.Labels ?? {};
    } catch (error) {
      throw engineError(`inspect image ${reference}`, error, this.where);
    }
  }

  async listContainers(labels: Record<string, string>): Promise<ListedContainer[]> {
    try {
      const list = await this.docker.listContainers({
        all: true,
        filters: { label: Object.entries(labels).map(([key, value]) => `${key}=${value}`) },
      });
      return list.map((entry) => ({
        id: entry.Id,
        state: entry.State,
        labels: entry.Labels ?? {},
        image: entry.ImageID,
      }));
    } catch (error) {
      throw engineError("list containers", error, this.where);
    }
  }
}

/** Most VOLUMEs an image may declare: each becomes a tmpfs mount, and their number is the artifact's to choose. */
const MAX_IMAGE_VOLUMES = 64;
/** What an image's VOLUME gets instead of a volume on the engine's disk. */
const VOLUME_TMPFS = "rw,nosuid,nodev,size=64m";

function volumeTmpfs(volumes: string[]): Record<string, string> {
  return Object.fromEntries(volumes.map((path) => [path, VOLUME_TMPFS]));
}

/** "the Docker engine at unix:///var/run/docker.sock" (or tcp://host:port): what errors name. */
function describeEndpoint(docker: Dockerode): string {
  const modem = docker.modem as { socketPath?: unknown; host?: unknown; port?: unknown; protocol?: unknown };
  if (typeof modem.socketPath === "string" && modem.socketPath)
    return `the Docker engine at unix://${modem.socketPath}`;
  if (typeof modem.host === "string" && modem.host) {
    const protocol = typeof modem.protocol === "string" ? modem.protocol : "http";
    return `the Docker engine at ${protocol}://${modem.host}${modem.port ? `:${String(modem.port)}` : ""}`;
  }
  return "the Docker engine";
}
