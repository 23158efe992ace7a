/** Latency percentiles of an artifact's calls, over its most recent calls. */
export interface LatencyStats {
  /** Calls in the window (at most 1,024: the most recent). */
  count: number;
  /** Milliseconds from execute() to the container's answer, queue time included. */
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
}

const WINDOW = 1_024;

/** The durations of the last 1,024 answered calls: O(1) to record, sorted only when stats are read. */
export class LatencyWindow {
  private readonly samples = new Float64Array(WINDOW);
  private next = 0;
  private filled = 0;

  record(ms: number): void {
    this.samples[this.next] = ms;
    this.next = (this.next + 1) % WINDOW;
    if (this.filled < WINDOW) this.filled++;
  }

  stats(): LatencyStats {
    const sorted = this.samples.slice(0, this.filled).sort();
    const at = (p: number) => {
      if (this.filled === 0) return 0;
      const value = sorted[Math.min(this.filled - 1, Math.ceil((p / 100) * this.filled) - 1)] ?? 0;
      return Math.round(value * 1000) / 1000;
    };
    return { count: this.filled, p50Ms: at(50), p90Ms: at(90), p99Ms: at(99) };
  }
}
