import type {
  Attributes,
  BatchObservableCallback,
  Counter,
  Histogram,
  Meter,
  ObservableCounter,
  ObservableGauge,
} from "@opentelemetry/api";
import type { RuntimeStats } from "../runtime.js";
import type { ArtifactRef } from "./channels.js";

/**
 * The runtime's metrics on one OpenTelemetry Meter (named "ociapp-runtime"). Names and attributes follow
 * the OpenTelemetry semantic conventions' style (dotted lowercase, `{unit}` annotations for counts,
 * UCUM units: https://opentelemetry.io/docs/specs/semconv/general/metrics/), under the `ociapp.`
 * namespace. Durations are in milliseconds (unit "ms"), as the runtime's own stats are.
 */
export const METRICS = {
  /**
   * ObservableCounter, {call}: calls settled, by artifact and outcome ("ok", an OCIAPP_* code,
   * "aborted"). Tallied in the process and read at collection: a Counter's add() hashes its
   * attributes on every call, a cost the warm path need not pay twice (the histogram pays it once).
   */
  calls: "ociapp.calls",
  /** Histogram, ms: execute() to settled, queue and cold start included, by artifact and outcome. */
  callDuration: "ociapp.call.duration",
  /** Counter, {container}: containers the engine started (each one a cold start), by artifact. */
  coldStarts: "ociapp.container.cold_starts",
  /** Histogram, ms: a container's start (image wait included) to the app's hello, by artifact. */
  startupDuration: "ociapp.container.startup.duration",
  /** ObservableGauge, {container}: containers by artifact and `ociapp.container.state`. */
  containers: "ociapp.containers",
  /** ObservableGauge, {call}: calls waiting in the artifact's queue. */
  queueDepth: "ociapp.queue.depth",
  /** ObservableCounter, {record}: log records dropped (sink behind, queue full, app-side drops). */
  logsDropped: "ociapp.logs.dropped",
  /** Counter, {load}: image loads into the engine, by artifact and `ociapp.image.outcome` ("ok" or "failed"). */
  imageLoads: "ociapp.image.loads",
  /** Counter, By: bytes of artifact files streamed to the engine. */
  imageLoadBytes: "ociapp.image.load.bytes",
} as const;

/** Attribute names shared by spans and metrics. */
export const ATTR = {
  digest: "ociapp.artifact.digest",
  path: "ociapp.artifact.path",
  outcome: "ociapp.call.outcome",
  state: "ociapp.container.state",
  /** An image load's outcome: "ok" or "failed". */
  loadOutcome: "ociapp.image.outcome",
} as const;

/** Bucket boundaries in ms: a warm call takes tens of microseconds, a cold one seconds. */
const CALL_BUCKETS_MS = [
  0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000,
];
const STARTUP_BUCKETS_MS = [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000];

/** Calls settled with one set of attributes. */
interface CallTally {
  attributes: Attributes;
  count: number;
}

/** What the observable instruments read: a Runtime (its id and stats()). */
export interface TelemetrySource {
  readonly id: string;
  stats(): RuntimeStats;
}

/** Container states reported by the gauge ("gone" containers are no longer counted anywhere). */
const STATES = ["starting", "ready", "draining", "stopping"] as const;

/**
 * The instruments of one Meter, shared by every Runtime that reports to it. The observable ones are
 * read once per collection over all of those Runtimes (summed per artifact), through one batch
 * callback registered with the instruments.
 */
export class Instruments {
  private readonly callDuration: Histogram;
  readonly coldStarts: Counter;
  readonly startupDuration: Histogram;
  readonly imageLoads: Counter;
  readonly imageLoadBytes: Counter;
  private readonly calls: ObservableCounter;
  private readonly containers: ObservableGauge;
  private readonly queueDepth: ObservableGauge;
  private readonly logsDropped: ObservableCounter;
  private readonly sources = new Set<TelemetrySource>();
  /** Dropped log records of the Runtimes that closed: the counter must not go down when one does. */
  private retiredDropped = 0;
  /** Per artifact ref and outcome, built once: the warm path allocates nothing to count a call. */
  private readonly byRef = new WeakMap<ArtifactRef, Map<string, CallTally>>();
  /** The tallies by attributes (digest, path, outcome): two refs of one artifact share one. */
  private readonly tallies = new Map<string, CallTally>();
  /** Every artifact the gauges reported (digest and path), by "digest\npath": one per pool ever run. */
  private readonly artifacts = new Map<string, Attributes>();

  /**
   * `beforeCollect` records the calls whose records are still pending (telemetry.ts batches them),
   * so a collection counts every call settled before it.
   */
  constructor(
    meter: Meter,
    private readonly beforeCollect: () => void,
  ) {
    this.calls = meter.createObservableCounter(METRICS.calls, {
      unit: "{call}",
      description: "Calls settled",
    });
    this.callDuration = meter.createHistogram(METRICS.callDuration, {
      unit: "ms",
      description: "Time from execute() to the call settling, queue and cold start included",
      advice: { explicitBucketBoundaries: CALL_BUCKETS_MS },
    });
    this.coldStarts = meter.createCounter(METRICS.coldStarts, {
      unit: "{container}",
      description: "Containers started (each a cold start)",
    });
    this.startupDuration = meter.createHistogram(METRICS.startupDuration, {
      unit: "ms",
      description: "Time from a container's start (image wait included) to the app's hello",
      advice: { explicitBucketBoundaries: STARTUP_BUCKETS_MS },
    });
    this.imageLoads = meter.createCounter(METRICS.imageLoads, { unit: "{load}", description: "Image loads" });
    this.imageLoadBytes = meter.createCounter(METRICS.imageLoadBytes, {
      unit: "By",
      description: "Bytes of artifact files streamed to the engine",
    });
    this.containers = meter.createObservableGauge(METRICS.containers, {
      unit: "{container}",
      description: "Containers by artifact and state",
    });
    this.queueDepth = meter.createObservableGauge(METRICS.queueDepth, {
      unit: "{call}",
      description: "Calls waiting in the artifact's queue",
    });
    this.logsDropped = meter.createObservableCounter(METRICS.logsDropped, {
      unit: "{record}",
      description: "Log records dropped before the logs sink",
    });
    // Registered for the Meter's lifetime (the instruments are reused per Meter): the counters go on
    // reporting their totals once every Runtime has closed.
    meter.addBatchObservableCallback(this.observe, [
      this.calls,
      this.containers,
      this.queueDepth,
      this.logsDropped,
    ]);
  }

  /** Counts a settled call and records its duration (ms, execute() to settled). */
  recordCall(ref: ArtifactRef | undefined, outcome: string, durationMs: number): void {
    const tally = this.tallyOf(ref, outcome);
    tally.count++;
    this.callDuration.record(durationMs, tally.attributes);
  }

  private tallyOf(ref: ArtifactRef | undefined, outcome: string): CallTally {
    let byOutcome = ref === undefined ? undefined : this.byRef.get(ref);
    const cached = byOutcome?.get(outcome);
    if (cached !== undefined) return cached;
    const attributes: Attributes =
      ref === undefined
        ? { [ATTR.outcome]: outcome }
        : { [ATTR.digest]: ref.digest, [ATTR.path]: ref.path, [ATTR.outcome]: outcome };
    const key = ref === undefined ? `\n\n${outcome}` : `${ref.digest}\n${ref.path}\n${outcome}`;
    let tally = this.tallies.get(key);
    if (tally === undefined) {
      tally = { attributes, count: 0 };
      this.tallies.set(key, tally);
    }
    if (ref !== undefined) {
      if (byOutcome === undefined) {
        byOutcome = new Map();
        this.byRef.set(ref, byOutcome);
      }
      byOutcome.set(outcome, tally);
    }
    return tally;
  }

  /** Starts reading a Runtime's stats at each collection (containers, queue, dropped log records). */
  add(source: TelemetrySource): void {
    this.sources.add(source);
  }

  /**
   * Stops reading a closed Runtime: its containers and queue count 0 in the gauges; its calls and dropped
   * log records stay in the counters, which never go down (the service's last collection, at its
   * MeterProvider's shutdown, usually comes after the Runtime's close()).
   */
  remove(source: TelemetrySource): void {
    if (this.sources.delete(source)) this.retiredDropped += droppedOf(source);
  }

  private readonly observe: BatchObservableCallback = (observer) => {
    this.beforeCollect();
    for (const { attributes, count } of this.tallies.values())
      observer.observe(this.calls, count, attributes);
    let dropped = this.retiredDropped;
    // Summed per artifact over the Runtimes: two Runtimes running one artifact report one series.
    // Every artifact reported once is reported again, at 0 once no open Runtime runs it: the SDK
    // would otherwise go on exporting a gauge's last value (a closed Runtime's containers as ready).
    const containers = new Map<string, Series>();
    const queued = new Map<string, Series>();
    for (const [key, artifact] of this.artifacts) {
      for (const state of STATES)
        tally(containers, `${key}\n${state}`, { ...artifact, [ATTR.state]: state }, 0);
      tally(queued, key, artifact, 0);
    }
    for (const source of this.sources) {
      let stats: RuntimeStats;
      try {
        stats = source.stats();
      } catch {
        continue;
      }
      dropped += stats.logs.dropped;
      for (const artifact of stats.artifacts) {
        const key = `${artifact.digest}\n${artifact.path}`;
        let attributes = this.artifacts.get(key);
        if (attributes === undefined) {
          attributes = { [ATTR.digest]: artifact.digest, [ATTR.path]: artifact.path };
          this.artifacts.set(key, attributes);
        }
        for (const state of STATES) {
          tally(
            containers,
            `${key}\n${state}`,
            { ...attributes, [ATTR.state]: state },
            artifact.instances[state],
          );
        }
        tally(queued, key, attributes, artifact.queued);
      }
    }
    for (const { attributes, count } of containers.values())
      observer.observe(this.containers, count, attributes);
    for (const { attributes, count } of queued.values()) observer.observe(this.queueDepth, count, attributes);
    observer.observe(this.logsDropped, dropped);
  };
}

/** One series of a gauge at one collection. */
interface Series {
  attributes: Attributes;
  count: number;
}

/** Adds `count` to the series under `key`, created with `attributes` the first time. */
function tally(series: Map<string, Series>, key: string, attributes: Attributes, count: number): void {
  const entry = series.get(key);
  if (entry) entry.count += count;
  else series.set(key, { attributes, count });
}

function droppedOf(source: TelemetrySource): number {
  try {
    return source.stats().logs.dropped;
  } catch {
    return 0;
  }
}

const byMeter = new WeakMap<Meter, Instruments>();

/** The instruments of a Meter, created once (a Meter's instruments cannot be removed, so they are reused). */
export function instrumentsFor(meter: Meter, beforeCollect: () => void): Instruments {
  let instruments = byMeter.get(meter);
  if (instruments === undefined) {
    instruments = new Instruments(meter, beforeCollect);
    byMeter.set(meter, instruments);
  }
  return instruments;
}
