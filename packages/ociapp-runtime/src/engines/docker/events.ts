import type Dockerode from "dockerode";
import { engineError } from "./errors.js";
import { destroy, onJsonLines, unref } from "./streams.js";

/** How long opening the event stream may take: it is shared, so no one caller's signal may end it. */
const EVENTS_OPEN_TIMEOUT_MS = 10_000;

/** What the event stream said about one container. */
export class ContainerEventRecord {
  /** An `oom` event arrived for it. */
  oom = false;
  /** The exit code of its `die` event, once that arrived. */
  exitCode: number | null | undefined;
  /** Called at its `oom` event (gVisor: the sandbox hangs after an OOM kill until it is killed). */
  onOom: (() => void) | undefined;
  /** Resolves at its `die` event, or with undefined once the stream is lost. */
  readonly died: Promise<number | null | undefined>;
  settle!: (exitCode: number | null | undefined) => void;

  constructor() {
    this.died = new Promise((resolve) => {
      this.settle = resolve;
    });
  }
}

/**
 * One event stream (`type=container`, `oom` and `die`) shared by every container this engine
 * watches, open while it watches any. The engine writes a container's `oom` event before its `die`
 * event, and both go down this one stream in that order, so at the `die` event the OOM flag is final:
 * the same rule the engine applies to its own `State.OOMKilled` (source: moby daemon/monitor.go, the
 * exit handler logs "die" after the "oom" event set OOMKilled). Inspecting after the exit is no
 * option: AutoRemove has removed the container by then.
 */
export class ContainerEvents {
  private stream: NodeJS.ReadableStream | undefined;
  private opening: Promise<void> | undefined;
  private readonly records = new Map<string, ContainerEventRecord>();

  constructor(
    private readonly docker: Dockerode,
    private readonly where: string,
  ) {}

  /** True while the stream is open: a missing `die` event then means it has not happened yet. */
  get healthy(): boolean {
    return this.stream !== undefined;
  }

  /**
   * Opens the stream when it is not open; `dieFilter` is the engine's name for the exit in the
   * events filter (see EngineFlavour.dieEventFilter). Rejects with EngineUnavailableError.
   */
  open(dieFilter: "die" | "died" = "die"): Promise<void> {
    if (this.stream) return Promise.resolve();
    if (!this.opening) {
      this.opening = this.connect(dieFilter).finally(() => {
        this.opening = undefined;
      });
    }
    return this.opening;
  }

  /** Starts recording events for a container (before it starts, so none is missed). */
  watch(id: string): ContainerEventRecord {
    let record = this.records.get(id);
    if (!record) {
      record = new ContainerEventRecord();
      this.records.set(id, record);
      // A container registered after the stream was lost can never hear its die event.
      if (!this.stream && !this.opening) record.settle(undefined);
    }
    return record;
  }

  forget(id: string): void {
    this.records.delete(id);
    this.closeIfIdle();
  }

  /** Closes the stream when no container is watched: an idle engine holds no connection open. */
  closeIfIdle(): void {
    if (this.records.size === 0 && this.stream) {
      const stream = this.stream;
      this.stream = undefined;
      destroy(stream);
    }
  }

  private async connect(dieFilter: "die" | "died"): Promise<void> {
    // An engine that accepts the connection but never answers must not hold every start forever.
    const opening = new AbortController();
    const timer = setTimeout(() => opening.abort(), EVENTS_OPEN_TIMEOUT_MS);
    timer.unref();
    try {
      const stream = (await this.docker.getEvents({
        filters: { type: ["container"], event: ["oom", dieFilter] },
        abortSignal: opening.signal,
      })) as NodeJS.ReadableStream;
      unref(stream);
      onJsonLines(stream, (value) => this.onEvent(value));
      const lost = () => {
        if (this.stream !== stream) return;
        this.stream = undefined;
        // Nobody will hear these containers' die events now: their exits fall back to the wait answer.
        for (const record of this.records.values()) record.settle(undefined);
      };
      stream.on("end", lost);
      stream.on("error", lost);
      stream.on("close", lost);
      this.stream = stream;
    } catch (error) {
      throw engineError("open its event stream", error, this.where);
    } finally {
      clearTimeout(timer);
    }
  }

  private onEvent(value: unknown): void {
    const event = value as { Action?: string; Actor?: { ID?: string; Attributes?: Record<string, string> } };
    const id = event.Actor?.ID;
    const record = id === undefined ? undefined : this.records.get(id);
    if (!record) return;
    if (event.Action === "oom") {
      record.oom = true;
      record.onOom?.();
    } else if (event.Action === "die") {
      const code = Number(event.Actor?.Attributes?.exitCode);
      record.exitCode = Number.isInteger(code) ? code : null;
      record.settle(record.exitCode);
    }
  }
}
