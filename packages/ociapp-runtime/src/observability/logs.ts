import { escapeControl } from "../errors.js";

/** Severity of an app's log record (its console method); container output has none. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/**
 * One line a container wrote (any process in it: the app, `dot`, `jq`), or one console line of the
 * app during an `execute` (stream "app", tagged with the request's id). Text is the container's:
 * untrusted, at most 8 KiB, not escaped (escape it before printing it to a terminal; `stderrLogs`
 * does).
 */
export interface LogRecord {
  /** Date.now() when the host received it. */
  time: number;
  artifact: {
    /** The manifest digest: the runtime's own identity for the artifact. */
    digest: string;
    /** Name and version the app announced in its hello (the app's own claim). */
    name?: string;
    version?: string;
  };
  container: { id: string; name: string };
  stream: "stdout" | "stderr" | "app";
  /** For stream "app": the console method's level. */
  level?: LogLevel;
  /** For stream "app", written during an execute: that request's id (its call's id). */
  requestId?: string;
  text: string;
}

/**
 * Where a Runtime's log records go. Called once per record, from the event loop (never inside the
 * runtime's own bookkeeping); may return a promise, which is not awaited but counted: a sink with
 * more than 64 records in flight is skipped (the records are dropped and counted) until it catches up.
 * A throw or a rejection is counted in `stats().logs.sinkErrors` and never reaches the runtime.
 */
export type LogSink = (record: LogRecord) => void | Promise<void>;

export interface LogStats {
  delivered: number;
  /** Records dropped: the queue was full, the sink was behind, or the app dropped them itself. */
  dropped: number;
  sinkErrors: number;
}

/** Records waiting for the sink at most; past it new records are dropped (and counted). */
const MAX_QUEUED = 1_024;
/** Records handed to the sink per turn of the event loop, so a flood never starves the calls. */
const BATCH = 256;
/** Promises of an async sink that may be pending at once. */
const MAX_PENDING = 64;

/**
 * A bounded, always-draining queue between the containers' output and the service's sink: a slow,
 * throwing or absent sink never blocks a call or grows host memory. Memory: at most 1,024 records of
 * at most 8 KiB of text.
 */
export class LogDispatcher {
  private queue: LogRecord[] = [];
  private scheduled = false;
  private pending = 0;
  readonly stats: LogStats = { delivered: 0, dropped: 0, sinkErrors: 0 };

  constructor(private readonly sink: LogSink) {}

  /** Whether a record pushed now would be kept (callers skip building records that would not). */
  get accepting(): boolean {
    return this.queue.length < MAX_QUEUED;
  }

  push(record: LogRecord): void {
    if (this.queue.length >= MAX_QUEUED) {
      this.stats.dropped++;
      return;
    }
    this.queue.push(record);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(deliver, this);
    }
  }

  /** Records lost before they reached this queue (skipped by the output pipeline, or by the app). */
  countDropped(count: number): void {
    this.stats.dropped += count;
  }

  /** Check-phase callback: hands one batch to the sink. */
  deliverBatch(): void {
    this.scheduled = false;
    const batch = this.queue.length <= BATCH ? this.queue : this.queue.slice(0, BATCH);
    this.queue = this.queue.length <= BATCH ? [] : this.queue.slice(BATCH);
    for (const record of batch) {
      if (this.pending >= MAX_PENDING) {
        this.stats.dropped++;
        continue;
      }
      try {
        const result = this.sink(record);
        this.stats.delivered++;
        if (result && typeof (result as Promise<void>).then === "function") {
          this.pending++;
          (result as Promise<void>).then(
            () => this.pending--,
            () => {
              this.pending--;
              this.stats.sinkErrors++;
            },
          );
        }
      } catch {
        this.stats.sinkErrors++;
      }
    }
    if (this.queue.length > 0 && !this.scheduled) {
      this.scheduled = true;
      setImmediate(deliver, this);
    }
  }
}

function deliver(dispatcher: LogDispatcher): void {
  dispatcher.deliverBatch();
}

/**
 * A ready-made sink: each record as one line on the host's stderr, prefixed with the artifact and
 * the container, `[echo-app@0.1.0 3f2a1b9c0d4e stderr] text` (`app#<request id>` for an app's console
 * line during an execute), with control characters escaped so a container cannot forge terminal output.
 */
export function stderrLogs(options: { prefix?: string } = {}): LogSink {
  const prefix = options.prefix ?? "";
  return (record) => {
    const who = record.artifact.name
      ? `${record.artifact.name}${record.artifact.version ? `@${record.artifact.version}` : ""}`
      : record.artifact.digest.slice(7, 19);
    const stream = record.stream === "app" && record.requestId ? `app#${record.requestId}` : record.stream;
    process.stderr.write(
      `${prefix}[${escapeControl(who)} ${record.container.id.slice(0, 12)} ${stream}] ${escapeControl(record.text)}\n`,
    );
  };
}
