import type { AppHelloMessage, LogMessage, ProtocolViolationError } from "ociapp/protocol";
import type { ContainerExit, ContainerHandle, Engine } from "../engines/engine.js";
import { OutputPipeline } from "../engines/output.js";
import { type OciappRuntimeError, ProtocolError, RuntimeClosedError, WorkerExitedError } from "../errors.js";
import { removeContainerFolder } from "../host/runtime-dir.js";
import { type ArtifactRef, channels } from "../observability/channels.js";
import type { LogDispatcher, LogRecord } from "../observability/logs.js";
import type { ResolvedOptions } from "../options.js";
import type { Connection } from "../protocol/connection.js";
import type { ReceiveBudget } from "../protocol/receive-budget.js";
import { requestMisfit } from "../protocol/request-fit.js";
import { engineCall } from "../util/bounded.js";
import { within } from "../util/timers.js";
import { type Call, type CallHolder, RUNNING } from "./call.js";
import { CancelWatch } from "./cancel-watch.js";
import { exitText, UNKNOWN_EXIT } from "./exit-report.js";
import {
  abortedPromise,
  createInstance,
  killMargin,
  type StartupInput,
  type StartupResources,
  startInstance,
} from "./startup.js";
import { describeStartupFailure } from "./startup-failure.js";

/**
 * starting → ready → draining → stopping → gone. Only a ready instance takes calls; draining finishes
 * what it has; stopping has been signalled (or has died) and is being removed; gone holds nothing.
 */
export type InstanceState = "starting" | "ready" | "draining" | "stopping" | "gone";

/** One container, as stats() lists it. */
export interface ContainerStats {
  /** The engine's container id ("" while it is being created). */
  id: string;
  state: InstanceState;
  /** Calls holding a slot on it now. */
  inFlight: number;
  /** Milliseconds since it became ready (0 while starting). */
  uptimeMs: number;
  /** Calls it has answered. */
  callsServed: number;
}

export interface InstanceEvents {
  onReady(instance: Instance): void;
  onFinal(instance: Instance, call: Call): void;
  /** The container refused `call` because it is shutting down (it never ran): send it elsewhere. */
  onRefused(instance: Instance, call: Call): void;
  /** The instance left the ready state (it takes no more calls). */
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
  budget: ReceiveBudget;
  /** The runtime's logs sink, behind its bounded queue (undefined: no sink). */
  logs: LogDispatcher | undefined;
  /** The artifact, as the lifecycle events name it. */
  ref: ArtifactRef;
  labels: Record<string, string>;
  now: () => number;
}

/**
 * Upper bound on each engine call made while stopping (kill, remove) and on the wait for an exit
 * after SIGKILL: shutdownTimeout, clamped to 1..10 s. The engine itself may be wedged or gone.
 */
function engineBound(shutdownTimeout: number): number {
  return Math.min(10_000, Math.max(1_000, shutdownTimeout));
}

/** How long a cancelled call's final frame may take: shutdownTimeout, at least 1 s. */
function cancelGrace(shutdownTimeout: number): number {
  return Math.max(1_000, shutdownTimeout);
}

/** One container and its connection. */
export class Instance implements CallHolder {
  state: InstanceState = "starting";
  /** Requests it may hold at once: min(maxConcurrency, the hello's maxConcurrency). */
  capacity = 0;
  /** Largest request body it accepts: min(maxFrameBytes, the hello's limits.maxFrameBytes). */
  maxFrameBytes = 0;
  /** When it last had nothing in flight (the reaper's clock). */
  idleSince: number;
  /** When it became ready (the reaper's clock; 0 before). */
  readyAt = 0;
  /** Final frames it sent: the calls it served, cancelled ones included. */
  callsServed = 0;
  /** When the reaper last pinged it (the reaper's clock). */
  lastPing = 0;
  private pinging = false;
  /** How it ended, once the engine said (for the containerExited event). */
  private exitReport: ContainerExit | undefined;
  hello: AppHelloMessage | undefined;
  containerId: string | undefined;
  /** The container's stdout and stderr for its whole life (last lines kept for error reports). */
  readonly output: OutputPipeline;
  private readonly made: StartupResources = {};
  private readonly startAbort = new AbortController();
  private readonly cancels: CancelWatch;
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
    const logs = config.logs;
    this.output = logs
      ? new OutputPipeline({
          onLine: (stream, text) => logs.push(this.record(stream, text)),
          accepting: () => logs.accepting,
          onSkipped: (count) => logs.countDropped(count),
        })
      : new OutputPipeline();
    this.cancels = new CancelWatch(
      cancelGrace(config.options.shutdownTimeout),
      (call) => this.connection?.pending.get(call.id) === call,
      () => this.drain(),
    );
  }

  private get connection(): Connection | undefined {
    return this.made.connection;
  }

  private get handle(): ContainerHandle | undefined {
    return this.made.handle;
  }

  /** A log record of this container's (its artifact's name and version as its hello claims them). */
  private record(stream: LogRecord["stream"], text: string, extra?: Partial<LogRecord>): LogRecord {
    const app = this.hello?.app;
    return {
      time: Date.now(),
      artifact: { digest: this.config.digest, name: app?.name, version: app?.version },
      container: { id: this.made.handle?.id ?? "", name: this.config.name },
      stream,
      text,
      ...extra,
    };
  }

  /** A log frame from the app: its console line during an execute, tagged with the request id. */
  private onLog(message: LogMessage): void {
    const logs = this.config.logs;
    if (!logs) return;
    if (message.dropped) logs.countDropped(message.dropped);
    logs.push(this.record("app", message.text, { level: message.level, requestId: message.id }));
  }

  /** Calls holding a slot, answered or not (a cancelled call holds its slot until its final frame). */
  get inFlight(): number {
    return this.connection?.pending.size ?? 0;
  }

  /** Calls whose callers still wait for an answer. */
  private get waitingCalls(): number {
    let waiting = 0;
    for (const call of this.connection?.pending.values() ?? []) if (!call.settled) waiting++;
    return waiting;
  }

  /** Sends the call (the pool checked there is a free slot). */
  send(call: Call): void {
    if (call.prime && this.hello?.capabilities.includes("prime-request") !== true) {
      // An app that does not list it would take the frame for a protocol violation.
      call.fail(new Error("the app does not take prime requests"));
      return;
    }
    // The runtime framed the request for its own limits; a container may announce smaller ones.
    const misfit = requestMisfit(call.frame, this.maxFrameBytes, (this.hello as AppHelloMessage).limits);
    if (misfit) {
      call.fail(misfit);
      return;
    }
    call.stage = RUNNING;
    call.holder = this;
    // Only the callSettled event reports it: no clock read per call without a subscriber.
    if (channels.callSettled.hasSubscribers) call.sentAt = performance.now();
    (this.connection as Connection).send(call);
    if (channels.callSent.hasSubscribers && !call.prime) {
      channels.callSent.publish({
        id: call.id,
        artifact: call.artifact,
        containerId: this.containerId ?? "",
      });
    }
  }

  receiving(): number {
    return this.connection?.receiving() ?? -1;
  }

  abandon(call: Call): void {
    const connection = this.connection;
    if (!connection?.pending.has(call.id)) return;
    connection.cancel(call.id);
    // The slot stays taken until the container's final frame. An app that ignores its signal could
    // pin every slot forever, so a cancel not answered within cancelGrace drains the container.
    this.cancels.add(call);
    if (this.state === "draining" && this.waitingCalls === 0) void this.stop();
  }

  /** Set by prepare(): the standby's create, which start() then finishes. */
  private prepared: Promise<void> | undefined;

  /** What startup.ts needs of this instance for an attempt ending with `signal`. */
  private startupInput(signal: AbortSignal): StartupInput {
    return {
      ...this.config,
      output: this.output,
      signal,
      events: {
        onFinal: (call) => this.events.onFinal(this, call),
        onRefused: (call) => this.onRefused(call),
        onUnaskedCancel: (call) => this.onUnaskedCancel(call),
        onLog: (message) => this.onLog(message),
        onEnd: (violation) => void this.onConnectionEnd(violation),
      },
    };
  }

  /**
   * A standby (pool/standby.ts): creates the container without starting it, within startupTimeout
   * once the image is there. Rejects with the engine's error (start() then fails with it too); the
   * caller discards a standby whose prepare failed.
   */
  prepare(image: Promise<void>): Promise<void> {
    this.prepared ??= (async () => {
      await Promise.race([image, abortedPromise(this.startAbort.signal)]);
      const bound = AbortSignal.timeout(this.config.options.startupTimeout);
      await createInstance(this.startupInput(AbortSignal.any([this.startAbort.signal, bound])), this.made);
    })();
    return this.prepared;
  }

  /** Removes a standby that was never started (close, idle, or its prepare failed). Idempotent. */
  async discard(): Promise<void> {
    if (this.finished) return this.finished;
    this.abortStart();
    await this.prepared?.catch(() => undefined);
    this.containerId = this.handle?.id;
    this.state = "stopping";
    this.finished = this.cleanUp(false);
    return this.finished;
  }

  /** Creates, starts and connects the container. Rejects with InstanceStartupError (or the engine's error). */
  async start(image: Promise<void>): Promise<void> {
    const { options } = this.config;
    // Everything this attempt waits on (connect retries, engine calls) listens to `signal`, which
    // also ends when the attempt itself does: a container that exits before its hello must not leave
    // the connect loop retrying behind the rejected start.
    const attempt = new AbortController();
    const signal = AbortSignal.any([this.startAbort.signal, attempt.signal]);
    const startedAt = performance.now();
    let deadline: ReturnType<typeof setTimeout> | undefined;
    try {
      // The image load is not part of startupTimeout; a close() still interrupts it.
      await Promise.race([image, abortedPromise(this.startAbort.signal)]);
      deadline = setTimeout(() => this.startAbort.abort("timeout"), options.startupTimeout);
      // A standby taken while its create is still under way: the start goes on from it.
      if (this.prepared) await Promise.race([this.prepared, abortedPromise(signal)]);
      const hello = await startInstance(this.startupInput(signal), this.made);
      this.containerId = this.handle?.id;
      (this.handle as ContainerHandle).exit.then((exit) => this.onExit(exit));
      this.hello = hello;
      this.capacity = Math.min(options.maxConcurrency, hello.maxConcurrency);
      this.maxFrameBytes = Math.min(options.maxFrameBytes, hello.limits.maxFrameBytes);
      this.idleSince = this.config.now();
      this.readyAt = this.idleSince;
      if (channels.containerReady.hasSubscribers) {
        channels.containerReady.publish({
          artifact: this.config.ref,
          containerId: this.containerId ?? "",
          startupMs: performance.now() - startedAt,
        });
      }
      this.lastPing = this.idleSince;
      this.state = "ready";
    } catch (error) {
      this.containerId = this.handle?.id;
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

  private startupFailure(error: unknown): Promise<OciappRuntimeError> {
    return describeStartupFailure(error, {
      digest: this.config.digest,
      options: this.config.options,
      signal: this.startAbort.signal,
      handle: this.handle,
      output: this.output,
    });
  }

  /**
   * The reaper's liveness check of an idle container: a protocol v2 ping (answered after everything
   * sent before it was dispatched). One that does not pong within `timeoutMs` has stopped answering
   * (a wedged event loop, a stopped process): it is retired and killed; nothing was in flight on it.
   */
  async checkAlive(timeoutMs: number): Promise<void> {
    const connection = this.connection;
    if (this.pinging || this.state !== "ready" || !connection) return;
    this.pinging = true;
    this.lastPing = this.config.now();
    try {
      const answered = await within(
        connection.ping().then(
          () => true,
          () => false,
        ),
        timeoutMs,
        true,
      );
      if (answered !== true && this.state === "ready" && !this.finished) {
        this.retire();
        this.finished = this.cleanUp(true);
      }
    } finally {
      this.pinging = false;
    }
  }

  private primed: Promise<void> | undefined;

  /**
   * warm()'s priming, once per container: a protocol v2 ping with `prime` (the app's prime() hook
   * runs and returns its sample, then `ociapp serve` runs its request path on it in process), so the
   * container's path is compiled and optimised before the first call; Runtime.warm's prime requests
   * follow (pool/prime.ts). A failed prime costs that call the compilation only; the container serves.
   */
  prime(): Promise<void> {
    this.primed ??= (this.connection?.ping(true) ?? Promise.resolve()).catch(() => undefined);
    return this.primed;
  }

  /** What stats() shows of it. */
  info(now: number): ContainerStats {
    return {
      id: this.containerId ?? "",
      state: this.state,
      inFlight: this.inFlight,
      uptimeMs: this.readyAt === 0 ? 0 : Math.max(0, Math.round(now - this.readyAt)),
      callsServed: this.callsServed,
    };
  }

  /** Stops a start in progress (close()). */
  abortStart(): void {
    this.startAbort.abort("closed");
  }

  /** Takes no more calls; stops once no caller waits on it (cancelled calls keep their slots). */
  drain(): void {
    if (this.state !== "ready") return;
    this.state = "draining";
    this.events.onRetired(this);
    if (this.waitingCalls === 0) void this.stop();
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
      await within(
        new Promise<void>((resolve) => {
          this.drainWaiter = resolve;
        }),
        this.config.options.shutdownTimeout,
      );
      this.drainWaiter = undefined;
    }
    // The calls still in flight had shutdownTimeout already: SIGKILL follows SIGTERM after the margin
    // only, so close() takes at most shutdownTimeout + margin (plus bounded engine calls).
    return this.stop(this.waitingCalls > 0 ? killMargin(this.config.options.shutdownTimeout) : undefined);
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
    const wasReady = this.state === "ready";
    this.state = "stopping";
    if (wasReady) this.events.onRetired(this);
    this.finished = (async () => {
      const { options } = this.config;
      const id = this.containerId as string;
      const exit = (this.handle as ContainerHandle).exit;
      await this.kill(id, "SIGTERM");
      let outcome = await within(exit, termWait ?? options.shutdownTimeout);
      if (outcome === "timeout") {
        await this.kill(id, "SIGKILL");
        outcome = await within(exit, engineBound(options.shutdownTimeout));
      }
      const report = outcome === "timeout" ? UNKNOWN_EXIT : outcome;
      this.exitReport = report;
      this.failPending(
        new WorkerExitedError(
          `the container ${exitText(report)} while stopping, before answering the request`,
          report,
          this.output.text(),
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
        UNKNOWN_EXIT,
        this.output.text(),
      ),
    );
  }

  /** Notified by pool after a final frame: a draining instance stops once no caller waits on it. */
  afterFinal(): void {
    if (this.inFlight === 0) this.idleSince = this.config.now();
    if (this.state === "draining" && this.waitingCalls === 0) void this.stop();
  }

  private onExit(exit: ContainerExit): void {
    if (this.state === "ready" || this.state === "draining") void this.crash(exit);
  }

  /**
   * The connection ended. A violation retires the container at once. Otherwise the container has
   * most likely exited: its calls wait for the engine's report (exit code, OOM flag, last output) up
   * to exitReportTimeout, so a busy machine gives a slower answer, never a less exact one.
   */
  private async onConnectionEnd(violation: ProtocolViolationError | undefined): Promise<void> {
    if (this.state === "gone" || this.finished) return;
    if (violation) {
      this.breakOff(
        new ProtocolError(
          violation.reason,
          `the container broke the protocol (${violation.reason}): ${violation.message}`,
          {
            cause: violation,
          },
        ),
      );
      return;
    }
    this.retire();
    const outcome = await within(
      (this.handle as ContainerHandle).exit,
      this.config.options.exitReportTimeout,
    );
    await this.crash(outcome === "timeout" ? UNKNOWN_EXIT : outcome);
  }

  /** The container cannot be trusted any more: fail what it holds, kill and remove it. */
  private breakOff(error: ProtocolError): void {
    this.retire();
    this.failPending(error);
    this.finished = this.cleanUp(true);
  }

  private crash(exit: ContainerExit): Promise<void> {
    if (this.finished) return this.finished;
    this.exitReport = exit;
    this.retire();
    this.failPending(
      new WorkerExitedError(
        `the container ${exitText(exit)} while the request was in flight`,
        exit,
        this.output.text(),
      ),
    );
    this.finished = this.cleanUp(true);
    return this.finished;
  }

  private retire(): void {
    const wasReady = this.state === "ready";
    this.state = "stopping";
    if (wasReady) this.events.onRetired(this);
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
    this.cancels.clear();
    this.made.listener?.close();
    this.connection?.destroy();
    const id = this.containerId;
    if (id) {
      if (kill) await this.kill(id, "SIGKILL");
      const bound = engineBound(this.config.options.shutdownTimeout);
      await engineCall((abort) => engine.removeContainer(id, abort), bound, `remove container ${id}`).catch(
        () => undefined,
      );
    }
    if (this.made.folder) await removeContainerFolder(this.made.folder).catch(() => undefined);
    this.handle?.release();
    if (channels.containerExited.hasSubscribers && this.containerId) {
      channels.containerExited.publish({
        artifact: this.config.ref,
        containerId: this.containerId,
        exitCode: this.exitReport?.exitCode ?? null,
        oomKilled: this.exitReport?.oomKilled ?? false,
      });
    }
    this.state = "gone";
    this.markGone();
    this.events.onGone(this);
  }
}
