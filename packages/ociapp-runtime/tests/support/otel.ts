import { context, type HrTime } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import {
  type DataPoint,
  type Histogram,
  MeterProvider,
  MetricReader,
  type ResourceMetrics,
} from "@opentelemetry/sdk-metrics";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { recordSettled } from "../../src/observability/telemetry.js";

/** A reader that collects when asked (the test's own export cycle). */
class TestReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

/**
 * An OpenTelemetry SDK for one test: spans into an in-memory exporter (simple processor: each span is
 * there once it ended), metrics through a reader collected on demand, and the AsyncLocalStorage
 * context manager installed globally (the caller's active span is what `execute()` sees).
 */
export class TestTelemetry {
  readonly exporter = new InMemorySpanExporter();
  readonly tracerProvider = new BasicTracerProvider({
    spanProcessors: [new SimpleSpanProcessor(this.exporter)],
  });
  private readonly reader = new TestReader();
  readonly meterProvider = new MeterProvider({ readers: [this.reader] });
  private readonly contextManager = new AsyncLocalStorageContextManager();

  constructor() {
    context.setGlobalContextManager(this.contextManager.enable());
  }

  /**
   * The spans ended so far. A settled call's span ends with the runtime's next batch (recorded off the
   * call's path, a few ms later), so this first records what is pending, as close() does.
   */
  async spans(name?: string): Promise<ReadableSpan[]> {
    recordSettled();
    const spans = this.exporter.getFinishedSpans();
    return name === undefined ? spans : spans.filter((span) => span.name === name);
  }

  /** The children of a span, by name. */
  childrenOf(parent: ReadableSpan): Map<string, ReadableSpan> {
    const id = parent.spanContext().spanId;
    return new Map(
      this.exporter
        .getFinishedSpans()
        .filter((span) => span.parentSpanContext?.spanId === id)
        .map((span) => [span.name, span]),
    );
  }

  /** A collection: the runtime records its pending calls first (its observable callback does). */
  async collect(): Promise<ResourceMetrics> {
    const { resourceMetrics, errors } = await this.reader.collect();
    if (errors.length > 0) throw errors[0];
    return resourceMetrics;
  }

  /** The data points of one metric, by name (empty when it never reported). */
  async points<T = number>(name: string): Promise<DataPoint<T>[]> {
    const metrics = await this.collect();
    for (const scope of metrics.scopeMetrics) {
      for (const metric of scope.metrics) {
        if (metric.descriptor.name === name) return metric.dataPoints as DataPoint<T>[];
      }
    }
    return [];
  }

  async histogram(name: string): Promise<DataPoint<Histogram>[]> {
    return this.points<Histogram>(name);
  }

  async shutdown(): Promise<void> {
    context.disable();
    await this.tracerProvider.shutdown();
    await this.meterProvider.shutdown();
  }
}

/** Milliseconds between two HrTimes. */
export function msBetween(start: HrTime, end: HrTime): number {
  return (end[0] - start[0]) * 1e3 + (end[1] - start[1]) / 1e6;
}

/** A span's time as milliseconds since the epoch. */
export function epochMs(time: HrTime): number {
  return time[0] * 1e3 + time[1] / 1e6;
}
