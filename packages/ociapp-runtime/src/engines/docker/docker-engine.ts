import { createReadStream } from "node:fs";
import type { IncomingMessage } from "node:http";
import Dockerode from "dockerode";
import { ArtifactError, EngineUnavailableError } from "../../errors.js";
import type { ContainerExit, ContainerHandle, ContainerSpec, Engine, ListedContainer } from "../engine.js";
import { OutputTail } from "../engine.js";

interface ModemError extends Error {
  statusCode?: number;
  code?: string;
  json?: { message?: string } | string | null;
}

const UNREACHABLE = new Set(["ECONNREFUSED", "ENOENT", "EACCES", "ECONNRESET", "EPIPE", "ETIMEDOUT"]);
/** Longest JSON line accepted from the engine's events or load progress streams. */
const MAX_ENGINE_LINE_BYTES = 256 * 1024;

function describe(error: unknown): string {
  const modem = error as ModemError;
  const json = modem?.json;
  const detail = typeof json === "object" && json?.message ? json.message : undefined;
  return (detail ?? (typeof json === "string" && json ? json : modem?.message) ?? String(error)).trim();
}

function statusOf(error: unknown): number | undefined {
  return (error as ModemError)?.statusCode;
}

/** Maps a dockerode failure to the runtime's error: unreachable engine vs an API refusal. */
function engineError(action: string, error: unknown): EngineUnavailableError {
  const code = (error as ModemError)?.code;
  if (code && UNREACHABLE.has(code)) {
    return new EngineUnavailableError(`cannot reach the Docker engine (${code}) while trying to ${action}`, {
      cause: error,
    });
  }
  return new EngineUnavailableError(`the Docker engine failed to ${action}: ${describe(error)}`, {
    cause: error,
  });
}

/** How long a load may go without a byte sent or received before it is given up. */
const LOAD_IDLE_TIMEOUT_MS = 120_000;

/** How long opening the event stream may take: it is shared, so no one caller's signal may end it. */
const EVENTS_OPEN_TIMEOUT_MS = 10_000;

/** Settles with `promise`, or rejects once `signal` aborts: a caller stops waiting on a wedged engine. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined, action: string): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () =>
      reject(
        new EngineUnavailableError(`the Docker engine did not ${action} in time`, { cause: signal.reason }),
      );
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** Reads newline-delimited JSON from a stream, each line bounded. */
function onJsonLines(stream: NodeJS.ReadableStream, onLine: (value: unknown) => void): void {
  let pending = "";
  stream.on("data", (chunk: Buffer | string) => {
    pending += chunk.toString();
    let newline = pending.indexOf("\n");
    while (newline >= 0) {
      const line = pending.slice(0, newline).trim();
      pending = pending.slice(newline + 1);
      if (line) {
        try {
          onLine(JSON.parse(line));
        } catch {
          // The engine's own stream: a line that does not parse is skipped, not fatal.
        }
      }
      newline = pending.indexOf("\n");
    }
    if (pending.length > MAX_ENGINE_LINE_BYTES) pending = "";
  });
}

function unref(stream: unknown): void {
  (stream as IncomingMessage).socket?.unref();
}

/**
 * Splits Docker's multiplexed attach stream (8-byte headers: stream type, 3 zero bytes, uint32 BE
 * size) into payload bytes, without trusting the sizes for allocation.
 */
class AttachDemuxer {
  private header = Buffer.alloc(8);
  private headerFill = 0;
  private remaining = 0;

  constructor(private readonly onPayload: (chunk: Buffer) => void) {}

  push(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, chunk.length - offset);
        this.onPayload(chunk.subarray(offset, offset + take));
        this.remaining -= take;
        offset += take;
        continue;
      }
      const take = Math.min(8 - this.headerFill, chunk.length - offset);
      chunk.copy(this.header, this.headerFill, offset, offset + take);
      this.headerFill += take;
      offset += take;
      if (this.headerFill === 8) {
        this.remaining = this.header.readUInt32BE(4);
        this.headerFill = 0;
      }
    }
  }
}

/**
 * The Docker Engine API through dockerode. Needs Docker Engine 25+ with the containerd image
 * store, where an image's ID is its manifest digest (how the runtime finds an artifact's image).
 *
 * Containers are created with AutoRemove, so the engine removes them even when no runtime is left
 * to do it. Their exit code comes from a wait request made before start (the engine answers it
 * when the container exits, before removing it); an OOM kill from the engine's event stream, which
 * is open while this engine has containers alive.
 */
export class DockerEngine implements Engine {
  readonly docker: Dockerode;
  private ready: Promise<void> | undefined;
  private events: NodeJS.ReadableStream | undefined;
  private eventsOpening: Promise<void> | undefined;
  private readonly oomKilled = new Set<string>();
  private readonly watched = new Set<string>();

  /** Takes dockerode options (default: the local socket, or DOCKER_HOST) or a Dockerode instance. */
  constructor(options?: Dockerode.DockerOptions | Dockerode) {
    this.docker = options instanceof Dockerode ? options : new Dockerode(options);
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

  private async checkEngine(signal?: AbortSignal): Promise<void> {
    let info: { ServerVersion?: string; DriverStatus?: [string, string][] };
    try {
      info = await untilAborted(this.docker.info(), signal, "answer an info request");
      signal?.throwIfAborted();
    } catch (error) {
      throw engineError("answer an info request", error);
    }
    const major = Number((info.ServerVersion ?? "0").split(".")[0]);
    if (!(major >= 25)) {
      throw new EngineUnavailableError(
        `Docker Engine ${info.ServerVersion ?? "(unknown version)"} is too old: ociapp-runtime needs 25 or later`,
      );
    }
    const containerdStore = (info.DriverStatus ?? []).some(
      ([key, value]) => key === "driver-type" && value.includes("io.containerd.snapshotter"),
    );
    if (!containerdStore) {
      throw new EngineUnavailableError(
        'the Docker engine uses the classic image store; ociapp-runtime needs the containerd image store ({"features":{"containerd-snapshotter":true}} in daemon.json)',
      );
    }
  }

  async hasImage(reference: string, signal?: AbortSignal): Promise<boolean> {
    try {
      await untilAborted(this.docker.getImage(reference).inspect(), signal, `inspect image ${reference}`);
      signal?.throwIfAborted();
      return true;
    } catch (error) {
      if (statusOf(error) === 404) return false;
      throw engineError(`inspect image ${reference}`, error);
    }
  }

  async loadImage(path: string, signal?: AbortSignal): Promise<void> {
    // A load that stops making progress (no file bytes sent, no answer bytes received) for
    // LOAD_IDLE_TIMEOUT_MS is given up: a wedged engine must not hold the first call forever.
    const idle = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const progress = () => {
      clearTimeout(timer);
      timer = setTimeout(
        () =>
          idle.abort(
            new EngineUnavailableError(
              `the Docker engine made no progress loading ${path} for ${LOAD_IDLE_TIMEOUT_MS} ms`,
            ),
          ),
        LOAD_IDLE_TIMEOUT_MS,
      );
    };
    const abortSignal = signal ? AbortSignal.any([signal, idle.signal]) : idle.signal;
    progress();
    try {
      return await untilAborted(this.streamImage(path, abortSignal, progress), abortSignal, `load ${path}`);
    } finally {
      clearTimeout(timer);
    }
  }

  private async streamImage(path: string, signal: AbortSignal, progress: () => void): Promise<void> {
    const file = createReadStream(path);
    file.on("data", progress);
    signal.addEventListener("abort", () => file.destroy(), { once: true });
    let response: NodeJS.ReadableStream;
    try {
      response = (await this.docker.loadImage(file, {
        quiet: true,
        abortSignal: signal,
      })) as NodeJS.ReadableStream;
      response.on("data", progress);
    } catch (error) {
      file.destroy();
      if (statusOf(error) !== undefined) {
        throw new ArtifactError(path, `the engine refused to load ${path}: ${describe(error)}`, {
          cause: error,
        });
      }
      throw engineError(`load ${path}`, error);
    }
    const failure = await new Promise<string | undefined>((resolve, reject) => {
      let message: string | undefined;
      onJsonLines(response, (value) => {
        const line = value as { error?: string; errorDetail?: { message?: string } };
        if (line.error || line.errorDetail) message = line.errorDetail?.message ?? line.error;
      });
      response.on("end", () => resolve(message));
      response.on("error", reject);
      file.on("error", reject);
    }).catch((error: unknown) => {
      file.destroy();
      throw (error as NodeJS.ErrnoException).code === "ENOENT" ||
        (error as NodeJS.ErrnoException).code === "EISDIR"
        ? new ArtifactError(path, `cannot read ${path}: ${describe(error)}`, { cause: error })
        : engineError(`load ${path}`, error);
    });
    if (failure) throw new ArtifactError(path, `the engine could not load ${path}: ${failure}`);
  }

  async createContainer(spec: ContainerSpec, signal?: AbortSignal): Promise<ContainerHandle> {
    await untilAborted(this.openEvents(), signal, "open its event stream");
    const c = spec.container;
    let container: Dockerode.Container;
    // Not aborted with the caller's signal: an engine that got the request may create the container
    // anyway. The caller stops waiting at once, and a container that appears late is removed (it is
    // never started, so AutoRemove would never remove it).
    const creating = this.docker.createContainer({
      name: spec.name,
      Image: spec.image,
      User: c.user,
      Env: Object.entries(spec.env).map(([key, value]) => `${key}=${value}`),
      Labels: spec.labels,
      AttachStdout: true,
      AttachStderr: true,
      HostConfig: {
        AutoRemove: true,
        Binds: [`${spec.socketFolder}:/run/ociapp:rw`],
        NetworkMode: c.networkMode,
        ReadonlyRootfs: c.readonlyRootfs,
        Tmpfs: c.tmpfs,
        CapDrop: c.capDrop,
        SecurityOpt: c.noNewPrivileges ? ["no-new-privileges"] : [],
        Init: c.init,
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
      this.closeEventsIfIdle();
      throw error instanceof EngineUnavailableError
        ? error
        : engineError(`create a container of ${spec.image}`, error);
    }
    const id = container.id;
    this.watched.add(id);
    try {
      // Both must be in place before start; they do not depend on each other.
      const [{ exit }, attached] = await untilAborted(
        Promise.all([this.watchExit(id), container.attach({ stream: true, stdout: true, stderr: true })]),
        signal,
        `watch container ${id}`,
      );
      const attach = attached as NodeJS.ReadableStream;
      const output = new OutputTail();
      unref(attach);
      const demuxer = new AttachDemuxer((chunk) => output.push(chunk));
      attach.on("data", (chunk: Buffer) => demuxer.push(chunk));
      attach.on("error", () => undefined);
      return {
        id,
        exit,
        recentOutput: () => output.text(),
        detachOutput: () => (attach as unknown as { destroy(): void }).destroy(),
      };
    } catch (error) {
      // A caller that gave up does not wait for the removal (the engine may be wedged).
      const removal = this.removeContainer(id).catch(() => undefined);
      if (!signal?.aborted) await removal;
      this.forget(id);
      throw error instanceof EngineUnavailableError ? error : engineError(`watch container ${id}`, error);
    }
  }

  /** Arms a wait(next-exit) before start: the engine answers its headers once it is registered. */
  private watchExit(id: string): Promise<{ exit: Promise<ContainerExit> }> {
    return new Promise((armed, failed) => {
      this.docker.modem.dial(
        {
          path: `/containers/${id}/wait?`,
          method: "POST",
          isStream: true,
          statusCodes: { 200: true, 400: "bad parameter", 404: "no such container", 500: "server error" },
          options: { condition: "next-exit" },
        },
        (error: unknown, result: unknown) => {
          const response = result as NodeJS.ReadableStream;
          if (error) {
            failed(error);
            return;
          }
          unref(response);
          armed({
            exit: new Promise<ContainerExit>((settle) => {
              let body = "";
              response.on("data", (chunk: Buffer) => {
                if (body.length < 64 * 1024) body += chunk.toString();
              });
              const finish = async () => {
                let exitCode: number | null = null;
                try {
                  const parsed = JSON.parse(body) as { StatusCode?: number };
                  if (typeof parsed.StatusCode === "number") exitCode = parsed.StatusCode;
                } catch {
                  // The engine went away mid-wait: the exit code is unknown.
                }
                // The oom event precedes the exit, but arrives on another connection: give it a moment.
                if (exitCode === 137 && !this.oomKilled.has(id)) await new Promise((r) => setTimeout(r, 150));
                const oomKilled = this.oomKilled.has(id);
                this.forget(id);
                settle({ exitCode, oomKilled });
              };
              response.on("end", finish);
              response.on("error", finish);
            }),
          });
        },
      );
    });
  }

  private forget(id: string): void {
    this.watched.delete(id);
    this.oomKilled.delete(id);
    this.closeEventsIfIdle();
  }

  private openEvents(): Promise<void> {
    if (this.events) return Promise.resolve();
    if (!this.eventsOpening) {
      this.eventsOpening = (async () => {
        // An engine that accepts the connection but never answers must not hold every start forever.
        const opening = new AbortController();
        const timer = setTimeout(() => opening.abort(), EVENTS_OPEN_TIMEOUT_MS);
        timer.unref();
        try {
          const stream = (await this.docker.getEvents({
            filters: { type: ["container"], event: ["oom"] },
            abortSignal: opening.signal,
          })) as NodeJS.ReadableStream;
          unref(stream);
          onJsonLines(stream, (value) => {
            const id = (value as { id?: string; Actor?: { ID?: string } }).Actor?.ID;
            if (id && this.watched.has(id)) this.oomKilled.add(id);
          });
          const lost = () => {
            if (this.events === stream) this.events = undefined;
          };
          stream.on("end", lost);
          stream.on("error", lost);
          stream.on("close", lost);
          this.events = stream;
        } catch (error) {
          throw engineError("open its event stream", error);
        } finally {
          clearTimeout(timer);
          this.eventsOpening = undefined;
        }
      })();
    }
    return this.eventsOpening;
  }

  private closeEventsIfIdle(): void {
    if (this.watched.size === 0 && this.events) {
      (this.events as unknown as { destroy(): void }).destroy();
      this.events = undefined;
    }
  }

  async startContainer(id: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.docker.getContainer(id).start({ abortSignal: signal });
    } catch (error) {
      throw engineError(`start container ${id}`, error);
    }
  }

  async killContainer(id: string, signal: "SIGTERM" | "SIGKILL", abort?: AbortSignal): Promise<void> {
    try {
      await this.docker.getContainer(id).kill({ signal, abortSignal: abort });
    } catch (error) {
      const status = statusOf(error);
      if (status === 404 || status === 409) return;
      throw engineError(`send ${signal} to container ${id}`, error);
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
      if (status !== 409) throw engineError(`remove container ${id}`, error);
    }
    // 409: AutoRemove is already removing it; wait until it is gone (bounded).
    for (let attempt = 0; attempt < 100; attempt++) {
      abort?.throwIfAborted();
      try {
        await container.inspect({ abortSignal: abort });
      } catch (error) {
        if (statusOf(error) === 404) return;
        throw engineError(`inspect container ${id}`, error);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new EngineUnavailableError(`container ${id} was still being removed after 10 s`);
  }

  async listContainers(labels: Record<string, string>): Promise<ListedContainer[]> {
    try {
      const list = await this.docker.listContainers({
        all: true,
        filters: { label: Object.entries(labels).map(([key, value]) => `${key}=${value}`) },
      });
      return list.map((entry) => ({ id: entry.Id, state: entry.State, labels: entry.Labels ?? {} }));
    } catch (error) {
      throw engineError("list containers", error);
    }
  }
}
