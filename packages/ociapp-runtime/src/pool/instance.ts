import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { FRAME_HEADER_BYTES, type HelloMessage, type ProtocolViolationError } from "ociapp/protocol";
import type { ContainerExit, ContainerHandle, Engine } from "../engines/engine.js";
import {
  InstanceStartupError,
  InvalidRequestError,
  OciappRuntimeError,
  ProtocolError,
  RuntimeClosedError,
  WorkerExitedError,
} from "../errors.js";
import { makeSocketFolder, removeSocketFolder, SOCKET_NAME } from "../host/socket-folder.js";
import type { ResolvedOptions } from "../options.js";
import { Connection } from "../protocol/connection.js";
import { engineCall } from "../util/bounded.js";
import { type Call, type CallHolder, RUNNING } from "./call.js";
import { DeadlineList } from "./deadline-list.js";

/**
 * starting → ready → draining → stopping → gone. Only a ready instance takes calls; draining finishes
 * what it has; stopping has been signalled (or has died) and is being removed; gone holds nothing.
 */
export type InstanceState = "starting" | "ready" | "draining" | "stopping" | "gone";

export interface InstanceEvents {
  onReady(instance: Instance): void;
  onFinal(instance: Instance, call: Call): void;
  /** The container refused `call` because it is shutting down (it never ran): send it elsewhere. */
  onRefused(instance: Instance, call: Call): void;
  /** The instance left the ready/starting states for stopping (it takes no more calls). */
  onRetired(instance: Instance): void;
  onGone(instance: Instance): void;
}

export interface InstanceConfig {
  engine: Engine;
  options: ResolvedOptions;
  /** "sha256:..." of the artifact: the image the container runs. */
  digest: string;
  name: string;
  folderPrefix: string;
  labels: Record<string, string>;
  now: () => number;
}

/**
 * How long calls on a connection that ended (no violation) wait for the engine's exit report, so
 * their WorkerExitedError can carry the exit code and the OOM flag. Kept tiny: the socket's EOF
 * usually trails the exit by less than this, and a container that hung up but runs on gets no more.
 */
const EXIT_REPORT_GRACE_MS = 100;
/**
 * Upper bound on each engine call made while stopping (kill, remove) and on the wait for an exit
 * after SIGKILL: shutdownTimeout, clamped to 1..10 s. The engine itself may be wedged or gone.
 */
function engineBound(shutdownTimeout: number): number {
  return Math.min(10_000, Math.max(1_000, shutdownTimeout));
}

class StartupAbort extends Error {}

/** A bounded wait. Ref'd on purpose: a close() in progress keeps the process alive until it is done. */
function delay(ms: number): Promise<"timeout"> {
  return new Promise((resolve) => setTimeout(resolve, ms, "timeout"));
}

/** What the app's shutdown grace leaves of shutdownTimeout, for its Cancelled answers to get out. */
function killMargin(shutdownTimeout: number): number {
  return Math.min(1_000, Math.floor(shutdownTimeout / 5));
}

/** How long a cancelled call's final frame may take: shutdownTimeout, at least 1 s. */
function cancelGrace(shutdownTimeout: number): number {
  return Math.max(1_000, shutdownTimeout);
}

function onCancelTimer(instance: Instance): void {
  instance.checkCancels();
}

function exitText(exit: ContainerExit): string {
  if (exit.oomKilled) return `was OOM-killed (exit code ${exit.exitCode ?? "unknown"})`;
  return exit.exitCode === null ? "ended (exit code unknown)" : `exited with code ${exit.exitCode}`;
}

/** One container and its connection. */
export class Instance implements CallHolder {
  state: InstanceState = "starting";
  /** Requests it may hold at once: min(maxConcurrency, the hello's maxConcurrency). */
  capacity = 0;
  /** Largest request body it accepts: min(maxFrameBytes, the hello's maxFrameBytes). */
  maxFrameBytes = 0;
  /** When it last had nothing in flight (the reaper's clock). */
  idleSince: number;
  hello: HelloMessage | undefined;
  containerId: string | undefined;
  /** The container's exit, once the engine reported it. */
  private exitReport: ContainerExit | undefined;
  private connection: Connection | undefined;
  private handle: ContainerHandle | undefined;
  private folder: string | undefined;
  private readonly startAbort = new AbortController();
  /** Cancelled calls awaiting their final frame, by deadline (one timer for all of them). */
  private readonly cancelled = new DeadlineList<Call>();
  private cancelTimer: ReturnType<typeof setTimeout> | undefined;
  private finished: Promise<void> | undefined;
  private markGone!: () => void;
  /** Resolves shutdown()'s wait once the drain is over (stop() began). */
  private drainWaiter: (() => void) | undefined;
  /** Resolves once the container and its folder are removed. */
  readonly gone = new Promise<void>((resolve) => {
    this.markGone = resolve;
  });

  constructor(
    private readonly config: InstanceConfig,
    private readonly events: InstanceEvents,
  ) {
    this.idleSince = config.now();
  }

  get inFlight(): number {
    return this.connection?.pending.size ?? 0;
  }

  /** Sends the call (the pool checked there is a free slot). */
  send(call: Call): void {
    // The runtime framed the request for its own maxFrameBytes; a container may announce less.
    if (call.frame.length - FRAME_HEADER_BYTES > this.maxFrameBytes) {
      call.fail(
        new InvalidRequestError(
          `the request is larger than the container accepts (its hello allows ${this.maxFrameBytes} bytes)`,
        ),
      );
      return;
    }
    call.stage = RUNNING;
    call.holder = this;
    (this.connection as Connection).send(call);
  }

  abandon(call: Call): void {
    const connection = this.connection;
    if (!connection?.pending.has(call.id)) return;
    connection.cancel(call.id);
    // The slot stays taken until the container's final frame. An app that ignores its signal could
    // pin every slot forever, so the answer to a cancel is awaited for cancelGrace at most.
    // Real time, not the injectable clock: it arms a real timer.
    this.cancelled.push(call, performance.now() + cancelGrace(this.config.options.shutdownTimeout));
    if (this.cancelTimer === undefined) this.armCancelTimer();
  }

  private armCancelTimer(): void {
    const due = this.cancelled.nextDue();
    if (due === undefined) return;
    this.cancelTimer = setTimeout(onCancelTimer, Math.max(0, due - performance.now()) + 1, this);
    this.cancelTimer.unref();
  }

  /** Timer callback: a cancelled call whose final frame is overdue retires the container. */
  checkCancels(): void {
    this.cancelTimer = undefined;
    const pending = this.connection?.pending;
    if (!pending || this.finished || this.state === "gone") return;
    const overdue = this.cancelled.takeOverdue(performance.now(), (call) => pending.get(call.id) === call);
    if (overdue) {
      const grace = cancelGrace(this.config.options.shutdownTimeout);
      this.breakOff(
        new ProtocolError(
          "cancel-timeout",
          `the container did not answer a cancelled request within ${grace} ms; it was retired`,
        ),
      );
      return;
    }
    this.armCancelTimer();
  }

  /** Creates, starts and connects the container. Rejects with InstanceStartupError (or the engine's error). */
  async start(image: Promise<void>): Promise<void> {
    const { engine, options, digest } = this.config;
    // Everything this attempt waits on (connect retries, engine calls) listens to `signal`, which
    // also ends when the attempt itself does: a container that exits before its hello must not leave
    // the connect loop retrying behind the rejected start.
    const attempt = new AbortController();
    const signal = AbortSignal.any([this.startAbort.signal, attempt.signal]);
    let deadline: ReturnType<typeof setTimeout> | undefined;
    const stopped = aborted(this.startAbort.signal);
    stopped.catch(() => undefined);
    try {
      // The image load is not part of startupTimeout; a close() still interrupts it.
      await Promise.race([image, stopped]);
      deadline = setTimeout(() => this.startAbort.abort("timeout"), options.startupTimeout);
      this.folder = await makeSocketFolder(
        options.socketDir,
        this.config.folderPrefix,
        options.container.uid,
        options.container.gid,
      );
      signal.throwIfAborted();
      const env: Record<string, string> = {
        ...options.env,
        OCIAPP_MAX_CONCURRENCY: String(options.maxConcurrency),
        OCIAPP_MAX_FRAME_BYTES: String(options.maxFrameBytes),
        // The app cancels what is left a little before SIGKILL, so its Cancelled answers get out.
        OCIAPP_SHUTDOWN_GRACE_MS: String(
          Math.max(0, options.shutdownTimeout - killMargin(options.shutdownTimeout)),
        ),
        OCIAPP_ORPHAN_TIMEOUT_MS: String(options.orphanTimeout),
      };
      this.handle = await engine.createContainer(
        {
          name: this.config.name,
          image: digest,
          env,
          labels: this.config.labels,
          socketFolder: this.folder,
          container: options.container,
        },
        signal,
      );
      this.containerId = this.handle.id;
      const exited = this.handle.exit.then((exit) => {
        throw new StartupAbort(`exit:${exitText(exit)}`);
      });
      exited.catch(() => undefined);
      const guard = <T>(step: Promise<T>): Promise<T> => Promise.race([step, exited, stopped]);
      await guard(engine.startContainer(this.handle.id, signal));
      const socket = await guard(connectWhenListening(join(this.folder, SOCKET_NAME), signal));
      const hello = await guard(this.handshake(socket));
      // A violation in the same chunk as the hello (a second hello, say) ended the connection already.
      const endedBy = this.connection?.endedBy;
      if (endedBy) throw new StartupAbort(endedBy === "closed" ? "closed" : `protocol:${endedBy.message}`);
      this.handle.exit.then((exit) => {
        this.exitReport = exit;
        this.onExit(exit);
      });
      this.hello = hello;
      this.capacity = Math.min(options.maxConcurrency, hello.maxConcurrency);
      this.maxFrameBytes = Math.min(options.maxFrameBytes, hello.maxFrameBytes);
      this.handle.detachOutput();
      this.idleSince = this.config.now();
      this.state = "ready";
    } catch (error) {
      attempt.abort("failed");
      const failure = await this.startupFailure(error);
      this.state = "stopping";
      await this.cleanUp(true);
      throw failure;
    } finally {
      clearTimeout(deadline);
      attempt.abort("done");
    }
    if (this.startAbort.signal.aborted) {
      // close() arrived in the same tick as the hello.
      await this.stop();
      throw new RuntimeClosedError();
    }
    this.events.onReady(this);
  }

  /** Connects the protocol client and resolves with the hello frame (or rejects when the stream ends). */
  private handshake(socket: Socket): Promise<HelloMessage> {
    return new Promise((resolve, reject) => {
      this.connection = new Connection(
        socket,
        {
          maxFrameBytes: this.config.options.maxFrameBytes,
          frameTimeoutMs: this.config.options.frameTimeout,
        },
        {
          onHello: (hello) => resolve(hello),
          onFinal: (call) => this.events.onFinal(this, call),
          onRefused: (call) => this.onRefused(call),
          onUnaskedCancel: (call) => this.onUnaskedCancel(call),
          onEnd: (violation, cause) => {
            if (this.state === "starting") {
              reject(new StartupAbort(violation ? `protocol:${violation.message}` : "closed", { cause }));
            } else {
              void this.onConnectionEnd(violation);
            }
          },
        },
      );
    });
  }

  private async startupFailure(error: unknown): Promise<OciappRuntimeError> {
    const { digest, options } = this.config;
    const signal = this.startAbort.signal;
    if (signal.aborted && signal.reason === "closed") return new RuntimeClosedError();
    // The image could not be loaded, or the engine is unreachable: the caller gets that error as is.
    if (error instanceof OciappRuntimeError && !this.handle) return error;
    // Output written just before an exit can trail the exit report.
    if (error instanceof StartupAbort && error.message.startsWith("exit:")) await delay(50);
    const logs = this.handle?.recentOutput() ?? "";
    const name = this.containerId ? `container ${this.containerId.slice(0, 12)}` : "the container";
    let message: string;
    if (signal.aborted && signal.reason === "timeout") {
      message = `${name} for ${digest} did not send its hello frame within ${options.startupTimeout} ms`;
    } else if (error instanceof StartupAbort && error.message.startsWith("exit:")) {
      message = `${name} for ${digest} ${error.message.slice(5)} before it was ready`;
    } else if (error instanceof StartupAbort && error.message.startsWith("protocol:")) {
      message = `${name} for ${digest} broke the protocol while starting: ${error.message.slice(9)}`;
    } else if (error instanceof StartupAbort) {
      message = `${name} for ${digest} closed its connection before sending hello`;
    } else {
      message = `${name} for ${digest} could not be started: ${(error as Error)?.message ?? String(error)}`;
    }
    return new InstanceStartupError(digest, message, logs, { cause: error });
  }

  /** Stops a start in progress (close()). */
  abortStart(): void {
    this.startAbort.abort("closed");
  }

  /** Takes no more calls; stops once the calls it holds have their final frames. */
  drain(): void {
    if (this.state !== "ready") return;
    this.state = "draining";
    this.events.onRetired(this);
    if (this.inFlight === 0) void this.stop();
  }

  /**
   * close(): takes no more calls, waits up to shutdownTimeout for the calls in flight to be answered,
   * then stops. Draining on the host first matters: a request already written but not yet read by
   * the app when SIGTERM lands would be answered "ShuttingDown".
   */
  async shutdown(): Promise<void> {
    if (this.state === "starting") return this.stop();
    this.drain();
    if (!this.finished) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.drainWaiter = resolve;
        timer = setTimeout(resolve, this.config.options.shutdownTimeout);
      });
      clearTimeout(timer);
      this.drainWaiter = undefined;
    }
    // The calls still in flight had shutdownTimeout already: SIGKILL follows SIGTERM after the margin
    // only, so close() takes at most shutdownTimeout + margin (plus bounded engine calls).
    return this.stop(this.inFlight > 0 ? killMargin(this.config.options.shutdownTimeout) : undefined);
  }

  /**
   * SIGTERM (the app finishes what it holds within its grace), SIGKILL after `termWait` (by default
   * shutdownTimeout), remove.
   */
  stop(termWait?: number): Promise<void> {
    this.drainWaiter?.();
    if (this.finished) return this.finished;
    if (this.state === "starting") {
      this.abortStart();
      return this.gone;
    }
    const wasLive = this.state === "ready";
    this.state = "stopping";
    if (wasLive) this.events.onRetired(this);
    this.finished = (async () => {
      const { options } = this.config;
      const id = this.containerId as string;
      const exit = (this.handle as ContainerHandle).exit;
      const bound = engineBound(options.shutdownTimeout);
      await this.kill(id, "SIGTERM");
      let outcome = await Promise.race([exit, delay(termWait ?? options.shutdownTimeout)]);
      if (outcome === "timeout") {
        await this.kill(id, "SIGKILL");
        outcome = await Promise.race([exit, delay(bound)]);
      }
      const report = outcome === "timeout" ? { exitCode: null, oomKilled: false } : outcome;
      this.failPending(
        new WorkerExitedError(
          `the container ${exitText(report)} while stopping, before answering the request`,
          report,
        ),
      );
      await this.cleanUp(false);
    })();
    return this.finished;
  }

  /**
   * The app is draining although this host did not ask it to (`docker stop`, or a daemon stopping
   * its containers): it takes no more calls from here, and the refused call, which never ran, goes
   * back to the pool for another container. A call whose caller already gave up just ends.
   */
  private onRefused(call: Call): void {
    this.drain();
    if (!call.settled) this.events.onRefused(this, call);
  }

  /**
   * The app cancelled a request this host never cancelled: its container is being stopped by
   * someone else (`docker stop`, a daemon shutting down), so the caller learns the container went
   * away, as it would from the exit itself. The instance drains: it takes no more calls.
   */
  private onUnaskedCancel(call: Call): void {
    const ours = this.finished !== undefined;
    this.drain();
    call.fail(
      new WorkerExitedError(
        ours
          ? "the container was stopped by this runtime (close() after shutdownTimeout) before answering the request; its app cancelled it"
          : "the container was stopped by something other than this runtime (docker stop, or the engine shutting down) while the request was in flight; its app cancelled the request",
        this.exitReport ?? { exitCode: null, oomKilled: false },
      ),
    );
  }

  /** Notified by pool after a final frame: a draining instance stops once empty. */
  afterFinal(): void {
    if (this.inFlight === 0) {
      this.idleSince = this.config.now();
      if (this.state === "draining") void this.stop();
    }
  }

  private onExit(exit: ContainerExit): void {
    if (this.state === "ready" || this.state === "draining") void this.crash(exit);
  }

  private async onConnectionEnd(violation: ProtocolViolationError | undefined): Promise<void> {
    if (this.state === "gone" || this.finished) return;
    if (violation) {
      this.breakOff(
        new ProtocolError(
          violation.reason,
          `the container broke the protocol (${violation.reason}): ${violation.message}`,
          { cause: violation },
        ),
      );
      return;
    }
    this.retire();
    const exit = (this.handle as ContainerHandle).exit;
    const outcome = await Promise.race([exit, delay(EXIT_REPORT_GRACE_MS)]);
    await this.crash(outcome === "timeout" ? { exitCode: null, oomKilled: false } : outcome);
  }

  /** The container cannot be trusted any more: fail what it holds, kill and remove it. */
  private breakOff(error: ProtocolError): void {
    this.retire();
    this.failPending(error);
    this.finished = this.cleanUp(true);
  }

  private crash(exit: ContainerExit): Promise<void> {
    if (this.finished) return this.finished;
    this.retire();
    this.failPending(
      new WorkerExitedError(`the container ${exitText(exit)} while the request was in flight`, exit),
    );
    this.finished = this.cleanUp(true);
    return this.finished;
  }

  private retire(): void {
    if (this.state === "ready" || this.state === "draining") {
      const wasReady = this.state === "ready";
      this.state = "stopping";
      if (wasReady) this.events.onRetired(this);
    }
    this.state = "stopping";
  }

  /** Best effort and bounded: a wedged engine must not hang a stop or a close(). */
  private async kill(id: string, signal: "SIGTERM" | "SIGKILL"): Promise<void> {
    const { engine, options } = this.config;
    await engineCall(
      (abort) => engine.killContainer(id, signal, abort),
      engineBound(options.shutdownTimeout),
      `send ${signal} to container ${id}`,
    ).catch(() => undefined);
  }

  private failPending(error: Error): void {
    const connection = this.connection;
    if (!connection) return;
    const calls = [...connection.pending.values()];
    connection.pending.clear();
    for (const call of calls) call.fail(error);
  }

  /** Kills (when asked) and removes the container, removes its folder; the instance is gone after. */
  private async cleanUp(kill: boolean): Promise<void> {
    const { engine } = this.config;
    clearTimeout(this.cancelTimer);
    this.cancelTimer = undefined;
    this.cancelled.clear();
    this.connection?.destroy();
    const id = this.containerId;
    if (id) {
      if (kill) await this.kill(id, "SIGKILL");
      const bound = engineBound(this.config.options.shutdownTimeout);
      await engineCall((abort) => engine.removeContainer(id, abort), bound, `remove container ${id}`).catch(
        () => undefined,
      );
    }
    if (this.folder) await removeSocketFolder(this.folder).catch(() => undefined);
    this.handle?.detachOutput();
    this.state = "gone";
    this.markGone();
    this.events.onGone(this);
  }
}

function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(new StartupAbort(String(signal.reason)));
    else
      signal.addEventListener("abort", () => reject(new StartupAbort(String(signal.reason))), { once: true });
  });
}

/**
 * Connects once the app listens: the socket file appears only when the app is loaded, so
 * ENOENT/ECONNREFUSED mean "not yet" and are retried with a short, capped backoff.
 */
async function connectWhenListening(path: string, signal: AbortSignal): Promise<Socket> {
  let wait = 2;
  for (;;) {
    signal.throwIfAborted();
    const socket = await new Promise<Socket | undefined>((resolve, reject) => {
      const attempt = connect(path);
      attempt.once("connect", () => {
        attempt.removeAllListeners("error");
        resolve(attempt);
      });
      attempt.once("error", (error: NodeJS.ErrnoException) => {
        attempt.destroy();
        if (error.code === "ENOENT" || error.code === "ECONNREFUSED") resolve(undefined);
        else reject(error);
      });
    });
    if (socket && signal.aborted) socket.destroy();
    signal.throwIfAborted();
    if (socket) return socket;
    await delay(wait);
    // Capped low: the socket appears a few hundred ms after start, and each try is one failed connect.
    wait = Math.min(wait * 2, 10);
  }
}
