// Timing helpers shared by every figure in the benchmark, so baselines and the runtime are measured
// the same way.

export interface Latency {
  calls: number;
  p50Us: number;
  p99Us: number;
  meanUs: number;
}

export interface Throughput {
  callers: number;
  calls: number;
  seconds: number;
  callsPerSecond: number;
}

function percentile(sorted: Float64Array, p: number): number {
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] ?? Number.NaN;
}

/** Sequential calls: one in flight at a time. */
export async function measureLatency(
  call: () => Promise<unknown>,
  calls: number,
  warmup = 200,
): Promise<Latency> {
  for (let i = 0; i < warmup; i++) await call();
  const samples = new Float64Array(calls);
  for (let i = 0; i < calls; i++) {
    const start = process.hrtime.bigint();
    await call();
    samples[i] = Number(process.hrtime.bigint() - start) / 1000;
  }
  samples.sort();
  let sum = 0;
  for (const sample of samples) sum += sample;
  return {
    calls,
    p50Us: round(percentile(samples, 50)),
    p99Us: round(percentile(samples, 99)),
    meanUs: round(sum / calls),
  };
}

/** `callers` concurrent loops sharing `calls` calls between them. */
export async function measureThroughput(
  call: () => Promise<unknown>,
  callers: number,
  calls: number,
): Promise<Throughput> {
  let next = 0;
  const loop = async () => {
    while (next < calls) {
      next++;
      await call();
    }
  };
  const warm = Math.min(calls, 1000);
  let warmed = 0;
  await Promise.all(
    Array.from({ length: Math.min(callers, warm) }, async () => {
      while (warmed < warm) {
        warmed++;
        await call();
      }
    }),
  );
  const start = process.hrtime.bigint();
  await Promise.all(Array.from({ length: callers }, loop));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return { callers, calls, seconds: round(seconds, 3), callsPerSecond: Math.round(calls / seconds) };
}

export async function timeIt<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const start = process.hrtime.bigint();
  const value = await fn();
  return { ms: round(Number(process.hrtime.bigint() - start) / 1e6, 1), value };
}

export function round(value: number, digits = 1): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

export function ratio(value: number, baseline: number): number {
  return round(value / baseline, 2);
}
