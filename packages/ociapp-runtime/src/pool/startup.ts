import type { Socket } from "node:net";
import { join } from "node:path";
import type { AppHelloMessage } from "ociapp/protocol";
import type { ContainerExit, ContainerHandle, Engine } from "../engines/engine.js";
import type { OutputPipeline } from "../engines/output.js";
import { CONTAINER_SOCKET, HOME_DIR, HOST_SOCKET, makeContainerFolder } from "../host/runtime-dir.js";
import { type ArtifactRef, channels } from "../observability/channels.js";
import type { LogDispatcher } from "../observability/logs.js";
import type { ResolvedOptions } from "../options.js";
import { Connection, type ConnectionEvents } from "../protocol/connection.js";
import { OneShotListener } from "../protocol/listener.js";
import type { ReceiveBudget } from "../protocol/receive-budget.js";

/** Why a start attempt ended before the hello (the instance turns it into InstanceStartupError). */
export type StartupStop =
  | { kind: "exit"; exit: ContainerExit }
  | { kind: "closed" }
  | { kind: "protocol"; message: string }
  | { kind: "aborted"; reason: unknown };

export class StartupAbort extends Error {
  constructor(readonly stop: StartupStop) {
    super(stop.kind);
  }
}

/** What a start attempt made, filled in as it goes, so a failed attempt can be cleaned up. */
export interface StartupResources {
  folder?: string;
  listener?: OneShotListener;
  handle?: ContainerHandle;
  connection?: Connection;
}

export interface StartupInput {
  engine: Engine;
  options: ResolvedOptions;
  digest: string;
  name: string;
  labels: Record<string, string>;
  folderPrefix: string;
  budget: ReceiveBudget;
  ref: ArtifactRef;
  logs: LogDispatcher | undefined;
  output: OutputPipeline;
  /** Where the connection reports once the instance is ready. */
  events: Omit<ConnectionEvents, "onHello" | "onEnd"> & {
    onEnd: ConnectionEvents["onEnd"];
  };
  /** Ends the attempt: a close(), or startupTimeout. */
  signal: AbortSignal;
}

/** What the runtime tells `ociapp serve` through the environment (RESERVED_ENV lists them). */
function serveEnv(options: ResolvedOptions): Record<string, string> {
  return {
    // A writable HOME (a tmpfs, inside the memory limit): ordinary tools (fontconfig's cache, npm,
    // git) fail on a read-only one. The service's own env may set another.
    HOME: HOME_DIR,
    ...options.env,
    OCIAPP_MAX_CONCURRENCY: String(options.maxConcurrency),
    // The app enforces the same limits on requests as this runtime on answers.
    OCIAPP_MAX_FRAME_BYTES: String(options.maxFrameBytes),
    OCIAPP_MAX_DEPTH: String(options.maxDepth),
    OCIAPP_MAX_VALUES: String(options.maxValues),
    // The app cancels what is left a little before SIGKILL, so its Cancelled answers get out.
    OCIAPP_SHUTDOWN_GRACE_MS: String(
      Math.max(0, options.shutdownTimeout - killMargin(options.shutdownTimeout)),
    ),
    OCIAPP_ORPHAN_TIMEOUT_MS: String(options.orphanTimeout),
    // serve connects to the runtime's socket (protocol v2) instead of listening.
    OCIAPP_CONNECT: CONTAINER_SOCKET,
  };
}

/** What the app's shutdown grace leaves of shutdownTimeout, for its Cancelled answers to get out. */
export function killMargin(shutdownTimeout: number): number {
  return Math.min(1_000, Math.floor(shutdownTimeout / 5));
}

/**
 * The first half of a start: makes the container's folder and listens on its socket, then creates
 * the container (not started). A standby runs it ahead of demand (pool/standby.ts). Everything it
 * makes is recorded in `made` as soon as it exists. Rejects with StartupAbort (the signal) or the
 * engine's error.
 */
export async function createInstance(input: StartupInput, made: StartupResources): Promise<void> {
  const { engine, options, signal } = input;
  made.folder = await makeContainerFolder(options.socketDir, input.folderPrefix);
  made.listener = await OneShotListener.listen(join(made.folder, HOST_SOCKET));
  signal.throwIfAborted();
  made.handle = await engine.createContainer(
    {
      name: input.name,
      image: input.digest,
      env: serveEnv(options),
      labels: input.labels,
      socketFolder: made.folder,
      container: options.container,
      output: input.output,
    },
    signal,
  );
}

/**
 * Makes the container's folder and listens on its socket, creates and starts the container, accepts
 * its connection and waits for its hello; a container created already (`made.handle`, a standby's)
 * is only started. Everything it makes is recorded in `made` as soon as it exists. Rejects with
 * StartupAbort (the container exited, closed the connection, broke the protocol, or the signal ended
 * the attempt) or with the engine's error.
 */
export async function startInstance(input: StartupInput, made: StartupResources): Promise<AppHelloMessage> {
  const { engine, signal } = input;
  const aborted = abortedPromise(signal);
  if (made.handle === undefined) await createInstance(input, made);
  if (made.handle === undefined || made.listener === undefined) throw new Error("no container was created");
  const exited = made.handle.exit.then((exit) => {
    throw new StartupAbort({ kind: "exit", exit });
  });
  exited.catch(() => undefined);
  const guard = <T>(step: Promise<T>): Promise<T> => Promise.race([step, exited, aborted]);
  await guard(engine.startContainer(made.handle.id, signal));
  if (channels.containerStarted.hasSubscribers) {
    channels.containerStarted.publish({ artifact: input.ref, containerId: made.handle.id });
  }
  const socket = await guard(made.listener.accepted);
  const hello = await guard(handshake(socket, input, made));
  // A violation in the same chunk as the hello (a second hello, say) ended the connection already.
  const endedBy = made.connection?.endedBy;
  if (endedBy) {
    throw new StartupAbort(
      endedBy === "closed" ? { kind: "closed" } : { kind: "protocol", message: endedBy.message },
    );
  }
  return hello;
}

/** Connects the protocol client and resolves with the hello frame (or rejects when the stream ends). */
function handshake(socket: Socket, input: StartupInput, made: StartupResources): Promise<AppHelloMessage> {
  return new Promise((resolve, reject) => {
    let ready = false;
    made.connection = new Connection(
      socket,
      {
        limits: {
          maxFrameBytes: input.options.maxFrameBytes,
          maxDepth: input.options.maxDepth,
          maxValues: input.options.maxValues,
        },
        frameTimeoutMs: input.options.frameTimeout,
        budget: input.budget,
        logRecords: input.logs !== undefined,
      },
      {
        ...input.events,
        onHello: (hello) => {
          ready = true;
          resolve(hello);
        },
        onEnd: (violation, cause) => {
          if (!ready) {
            reject(
              new StartupAbort(
                violation ? { kind: "protocol", message: violation.message } : { kind: "closed" },
              ),
            );
            void cause;
          } else {
            input.events.onEnd(violation, cause);
          }
        },
      },
    );
  });
}

/** Rejects with StartupAbort once `signal` aborts (never settles otherwise; never unhandled). */
export function abortedPromise(signal: AbortSignal): Promise<never> {
  const promise = new Promise<never>((_, reject) => {
    const fail = () => reject(new StartupAbort({ kind: "aborted", reason: signal.reason }));
    if (signal.aborted) fail();
    else signal.addEventListener("abort", fail, { once: true });
  });
  promise.catch(() => undefined);
  return promise;
}
