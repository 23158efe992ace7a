import type { IncomingMessage } from "node:http";
import type { OutputSink } from "../engine.js";
import { type KubeApi, KubernetesStatusError, query } from "./api.js";

/**
 * Follows one container's log (`GET /api/v1/namespaces/{ns}/pods/{name}/log?follow=true`, the stream
 * `kubectl logs -f` reads) into the runtime's output sink, from its first byte to its end: the kubelet
 * ends a followed log once the container has exited and its log file is read to the end, so `ended`
 * settles after the last thing the app wrote. The log API merges stdout and stderr into one stream
 * (splitting them needs the alpha PodLogsQuerySplitStreams gate), so every byte is pushed as "stdout".
 *
 * Open it only once the container has started (running or terminated): before that the API server
 * refuses a log request (400, "waiting to start"). A pod already gone (404) has no log left to read.
 */
export class PodLogFollower {
  readonly ended: Promise<void>;
  private settle!: () => void;
  private stream: IncomingMessage | undefined;
  private started = false;
  private stopped = false;
  private readonly abort = new AbortController();

  constructor(
    private readonly api: KubeApi,
    private readonly path: string,
    private readonly container: string,
    private readonly sink: OutputSink,
  ) {
    this.ended = new Promise((resolve) => {
      this.settle = resolve;
    });
  }

  /**
   * Opens the stream (once; later calls do nothing). Failures end it (the exit report goes on
   * without), except a 400 before the container has started, unless `final` (it never will).
   */
  start(final = false): void {
    if (this.started || this.stopped) return;
    this.started = true;
    const path = `${this.path}/log${query({ container: this.container, follow: true })}`;
    this.api.stream(path, "stream a pod's log", this.abort.signal).then(
      (stream) => {
        if (this.stopped) {
          stream.destroy();
          this.settle();
          return;
        }
        this.stream = stream;
        stream.on("data", (chunk: Buffer) => this.sink.push("stdout", chunk));
        stream.once("end", () => this.settle());
        stream.once("close", () => this.settle());
        stream.once("error", () => this.settle());
      },
      (error: unknown) => {
        // 400: not started after all (a race with the status); the caller may start again.
        if (error instanceof KubernetesStatusError && error.status === 400 && !this.stopped && !final) {
          this.started = false;
          return;
        }
        this.settle();
      },
    );
  }

  /** Whether start() has opened (or is opening) the stream. */
  get opened(): boolean {
    return this.started;
  }

  /** Stops reading (the pod is gone or being removed); `ended` settles. */
  stop(): void {
    this.stopped = true;
    this.abort.abort();
    this.stream?.destroy();
    this.settle();
  }
}
