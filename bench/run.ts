// pnpm bench: every figure measured in one run on this machine, each runtime figure beside its
// baseline. Writes bench/results.json and prints a table. Nothing here is asserted: speed goals are
// read off this output, not enforced by tests.

import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { cpus, hostname, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { build } from "ociapp-build";
import { DockerEngine, Runtime, type RuntimeOptions } from "ociapp-runtime";
import { measureBuilds } from "./build.js";
import { DEFAULT_RUN_FLAGS } from "./engine-floor.js";
import { measureFailures } from "./failures.js";
import {
  type Latency,
  measureLatency,
  measureThroughput,
  ratio,
  round,
  type Throughput,
  timeIt,
} from "./measure.js";
import { measureObservability } from "./observability.js";
import { measureParsing } from "./parse-limits.js";
import { type RawEcho, startContainerEcho, startHostEcho } from "./raw-baselines.js";
import { measureRemote } from "./remote.js";
import { measureStartup } from "./startup.js";

const execFileAsync = promisify(execFile);
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const RESULTS = fileURLToPath(new URL("./results.json", import.meta.url));
const PAYLOAD = { value: "hello" };
const LATENCY_CALLS = 5_000;
const THROUGHPUT_CALLS = 20_000;
const CALLERS = [1, 16, 256] as const;
const REPEATS = 3;

async function docker(args: string[]): Promise<string> {
  return (await execFileAsync("docker", args, { maxBuffer: 16 * 1024 * 1024 })).stdout.trim();
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return round(sorted[Math.floor(sorted.length / 2)] ?? Number.NaN);
}

function rssMiB(): number {
  globalThis.gc?.();
  return round(process.memoryUsage().rss / 1024 / 1024);
}

async function echoFigures(call: () => Promise<unknown>) {
  const latency = await measureLatency(call, LATENCY_CALLS);
  const throughput: Throughput[] = [];
  for (const callers of CALLERS) throughput.push(await measureThroughput(call, callers, THROUGHPUT_CALLS));
  return { latency, throughput };
}

async function rawFigures(start: () => Promise<RawEcho>) {
  const echo = await start();
  try {
    return await echoFigures(() => echo.client.call(PAYLOAD));
  } finally {
    await echo.close();
  }
}

async function withRuntime<T>(options: RuntimeOptions, fn: (runtime: Runtime) => Promise<T>): Promise<T> {
  const runtime = new Runtime(options);
  try {
    return await fn(runtime);
  } finally {
    await runtime.close();
  }
}

function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

const work = await mkdtemp(join(tmpdir(), "ociapp-bench-"));
try {
  log("building examples/echo-app: cold (--no-cache), then cached");
  const cold = await timeIt(() =>
    build({
      projectRoot: join(ROOT, "examples/echo-app"),
      outputDir: work,
      network: "host",
      noCache: true,
      progress: "quiet",
    }),
  );
  const cached = await timeIt(() =>
    build({
      projectRoot: join(ROOT, "examples/echo-app"),
      outputDir: work,
      network: "host",
      progress: "quiet",
    }),
  );
  const artifact = cached.value;
  const nodeMajor = process.versions.node.split(".")[0];
  const baseImage = `node:${nodeMajor}-bookworm-slim`;
  const baseImageBytes = Number(await docker(["image", "inspect", "--format", "{{.Size}}", baseImage]));

  log("artifact load: docker load beside the runtime's streamed load");
  const dropImage = async () => {
    await docker(["image", "rm", "-f", artifact.image]).catch(() => "");
    await docker(["image", "rm", "-f", artifact.digest]).catch(() => "");
  };
  await dropImage();
  const dockerLoad = await timeIt(() => docker(["load", "-i", artifact.path]));
  await dropImage();
  const engine = new DockerEngine();
  const runtimeLoad = await timeIt(() =>
    engine.loadImage(artifact.path, artifact.digest, { maxUnpackedBytes: 4 * 1024 ** 3 }),
  );
  const skipped = await withRuntime({}, async (runtime) => {
    await runtime.execute(artifact.path, PAYLOAD);
    return runtime.stats().artifacts[0]?.imageLoads ?? -1;
  });

  // Cold start per Node major, scale from zero, first call after warm(), warm figures under runc
  // and runsc: interleaved rounds against their baselines (bench/startup.ts).
  log("startup: cold start, standby, first call after warm(), warm vs raw (runc, runsc)");
  const startup = await measureStartup(join(work, "startup"), REPEATS, log);
  const dockerRuns: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    dockerRuns.push(
      (await timeIt(() => docker(["run", "--rm", "--network=none", "--entrypoint", "true", artifact.digest])))
        .ms,
    );
  }

  log("raw baselines: host process, then hardened container");
  const rawHost = await rawFigures(() => startHostEcho());
  const rawContainer = await rawFigures(() => startContainerEcho(artifact.digest, DEFAULT_RUN_FLAGS));

  log("runtime: one container");
  const one = await withRuntime({ minInstances: 1 }, async (runtime) => {
    await runtime.warm(artifact.path);
    return echoFigures(() => runtime.execute(artifact.path, PAYLOAD));
  });
  log("runtime: two containers");
  const two = await withRuntime({ minInstances: 2, maxInstances: 2 }, async (runtime) => {
    await runtime.warm(artifact.path);
    const throughput: Throughput[] = [];
    for (const callers of CALLERS) {
      throughput.push(
        await measureThroughput(() => runtime.execute(artifact.path, PAYLOAD), callers, THROUGHPUT_CALLS),
      );
    }
    return { throughput, containers: runtime.stats().artifacts[0]?.instances.ready ?? 0 };
  });

  // The default confinement gives each container one CPU; these show how much of the gap to the raw
  // echo is that quota (the server's CPU per call) rather than the host.
  log("without the CPU quota: raw container echo and runtime, 256 callers");
  const unlimitedRaw = await (async () => {
    const echo = await startContainerEcho(
      artifact.digest,
      DEFAULT_RUN_FLAGS.filter((flag) => !flag.startsWith("--cpus")),
    );
    try {
      return await measureThroughput(() => echo.client.call(PAYLOAD), 256, THROUGHPUT_CALLS);
    } finally {
      await echo.close();
    }
  })();
  const unlimitedRuntime = await withRuntime(
    { minInstances: 1, container: { nanoCpus: 0 } },
    async (runtime) => {
      await runtime.warm(artifact.path);
      return measureThroughput(() => runtime.execute(artifact.path, PAYLOAD), 256, THROUGHPUT_CALLS);
    },
  );

  log("host RSS over 100,000 calls");
  const rss = await withRuntime({}, async (runtime) => {
    const before = rssMiB();
    await measureThroughput(() => runtime.execute(artifact.path, PAYLOAD), 16, 1_000);
    const after1k = rssMiB();
    await measureThroughput(() => runtime.execute(artifact.path, PAYLOAD), 16, 99_000);
    const after100k = rssMiB();
    return {
      beforeMiB: before,
      after1kMiB: after1k,
      after100kMiB: after100k,
      growthVs1k: ratio(after100k, after1k),
    };
  });

  log("parsing: frames the default limits allow, and two they refuse");
  const parsing = measureParsing(log);

  log("failures: docker kill with calls in flight (20 rounds), close() then exit");
  const failures = await measureFailures(20, log);

  log("remote: agent over TLS on loopback and across a namespace hop, beside local");
  const remote = await measureRemote(artifact.path, log);

  log("builds: no-change and one-line-change rebuilds, sqlite-app sizes");
  const builds = await measureBuilds({ rounds: 5, sizes: true }, log);

  // Last: it installs a global OpenTelemetry context manager for its rounds (disabled after).
  log("observability: logs and OpenTelemetry enabled beside disabled, interleaved rounds");
  const observability = await measureObservability(artifact.path, 5, log);

  const warmP50 = one.latency.p50Us;
  const results = {
    measuredAt: new Date().toISOString(),
    machine: {
      hostname: hostname(),
      cpus: `${cpus().length} x ${cpus()[0]?.model ?? "?"}`,
      memoryGiB: round(totalmem() / 1024 ** 3),
      node: process.version,
      engine: await docker(["version", "--format", "{{.Server.Version}}"]),
    },
    payload: PAYLOAD,
    raw: { host: rawHost, container: rawContainer },
    runtime: {
      oneContainer: one,
      twoContainers: two,
      ratios: {
        warmP50VsContainerRaw: ratio(warmP50, rawContainer.latency.p50Us),
        warmP50VsHostRaw: ratio(warmP50, rawHost.latency.p50Us),
        throughput256VsContainerRaw: ratio(
          one.throughput[2]?.callsPerSecond ?? 0,
          rawContainer.throughput[2]?.callsPerSecond ?? 1,
        ),
      },
    },
    startup,
    dockerRunTrueMs: median(dockerRuns),
    artifact: {
      bytes: artifact.bytes,
      baseImageBytes,
      dockerLoadMs: dockerLoad.ms,
      runtimeLoadMs: runtimeLoad.ms,
      loadsWhenEngineHoldsImage: skipped,
    },
    build: { coldMs: cold.ms, cachedMs: cached.ms, rebuilds: builds },
    noCpuQuota: {
      raw256: unlimitedRaw,
      runtime256: unlimitedRuntime,
      ratio: ratio(unlimitedRuntime.callsPerSecond, unlimitedRaw.callsPerSecond),
    },
    rss,
    failures,
    parsing,
    remote,
    observability,
  };
  await writeFile(RESULTS, `${JSON.stringify(results, null, 2)}\n`);

  const rows: [string, string, string, string][] = [];
  const lat = (l: Latency) => `${l.p50Us} / ${l.p99Us} us`;
  rows.push([
    "warm execute p50 / p99",
    lat(one.latency),
    lat(rawContainer.latency),
    `${results.runtime.ratios.warmP50VsContainerRaw}x`,
  ]);
  rows.push(["  raw echo, host processes", lat(rawHost.latency), "", ""]);
  CALLERS.forEach((callers, i) => {
    const runtimeOne = one.throughput[i]?.callsPerSecond ?? 0;
    const runtimeTwo = two.throughput[i]?.callsPerSecond ?? 0;
    const raw = rawContainer.throughput[i]?.callsPerSecond ?? 1;
    rows.push([
      `throughput, ${callers} callers, 1 container`,
      `${runtimeOne}/s`,
      `${raw}/s`,
      `${ratio(runtimeOne, raw)}x`,
    ]);
    rows.push([
      `throughput, ${callers} callers, 2 containers`,
      `${runtimeTwo}/s`,
      `${raw}/s`,
      `${ratio(runtimeTwo, raw)}x`,
    ]);
  });
  for (const cold of startup.coldStart) {
    rows.push([
      `cold start, ${cold.label}`,
      `${cold.firstExecuteMs.median} ms`,
      `floor ${cold.engineFloorMs.median} ms`,
      `+${cold.aboveFloorMs} ms`,
    ]);
  }
  rows.push(["  docker run --rm image true", `${median(dockerRuns)} ms`, "", ""]);
  rows.push([
    "scale from zero, standby",
    `${startup.scaleFromZero.withStandbyMs.median} ms`,
    `without ${startup.scaleFromZero.withoutStandbyMs.median} ms`,
    "",
  ]);
  rows.push([
    "first execute after warm()",
    `${startup.firstAfterWarm.us.median} us`,
    `warm p50 ${startup.firstAfterWarm.warmP50Us} us`,
    `${startup.firstAfterWarm.ratio}x`,
  ]);
  for (const warm of startup.warm) {
    rows.push([
      `warm p50, ${warm.runtime} (interleaved)`,
      `${warm.ociappP50Us.median} us`,
      `raw ${warm.rawP50Us.median} us`,
      `${warm.warmP50VsRaw}x`,
    ]);
    rows.push([
      `throughput 256 callers, ${warm.runtime}`,
      `${warm.ociapp256PerSecond.median}/s`,
      `raw ${warm.raw256PerSecond.median}/s`,
      `${warm.throughput256VsRaw}x`,
    ]);
    rows.push([
      `  host CPU per call, 256 callers, ${warm.runtime}`,
      `${warm.sides.ociapp.hostCpuUsConcurrent.median} us`,
      `raw ${warm.sides.raw.hostCpuUsConcurrent.median} us`,
      `${warm.hostCpu256VsRaw}x`,
    ]);
    rows.push([
      `  throughput, maxConcurrency 256, ${warm.runtime}`,
      `${warm.depth256PerSecond.median}/s`,
      `raw ${warm.raw256PerSecond.median}/s`,
      `${warm.depth256VsRaw}x`,
    ]);
  }
  rows.push([
    "artifact load (runtime)",
    `${runtimeLoad.ms} ms`,
    `docker load ${dockerLoad.ms} ms`,
    `${ratio(runtimeLoad.ms, dockerLoad.ms)}x`,
  ]);
  rows.push(["loads when engine holds image", String(skipped), "0", ""]);
  rows.push(["build cold / cached", `${cold.ms} / ${cached.ms} ms`, "", ""]);
  rows.push([
    "rebuild, no change: tsc app / no build script",
    `${builds.noChange.totalMs.median} / ${builds.noChangeWithoutScript.totalMs.median} ms`,
    "",
    builds.noChange.reused && builds.noChangeWithoutScript.reused ? "artifact reused" : "REBUILT",
  ]);
  rows.push(["rebuild, one-line change", `${builds.oneLineChange.totalMs.median} ms`, "", ""]);
  if (builds.sqliteSizes) {
    const mib = (bytes: number) => `${round(bytes / 1024 ** 2)} MiB`;
    rows.push([
      "sqlite-app artifact, managed",
      mib(builds.sqliteSizes.managed),
      `hand-written ${mib(builds.sqliteSizes.twoStage)}`,
      `${ratio(builds.sqliteSizes.managed, builds.sqliteSizes.twoStage)}x`,
    ]);
  }
  rows.push([
    "artifact size",
    `${round(artifact.bytes / 1024 ** 2)} MiB`,
    `base ${round(baseImageBytes / 1024 ** 2)} MiB`,
    "",
  ]);
  rows.push([
    "host RSS before / 1k / 100k calls",
    `${rss.beforeMiB} / ${rss.after1kMiB} / ${rss.after100kMiB} MiB`,
    "",
    `${rss.growthVs1k}x`,
  ]);
  rows.push([
    "docker kill -> calls in flight rejected",
    `${failures.killToRejectedMs.median} ms median of ${failures.killToRejectedMs.rounds}`,
    "",
    failures.killReportsExact ? "137, not OOM, every time" : "REPORT INEXACT",
  ]);
  rows.push([
    "close() -> process exit (shutdownTimeout 60 s)",
    `${failures.closeToExitMs.median} ms`,
    "",
    "",
  ]);
  rows.push([
    "remote warm p50 / p99, TLS, loopback",
    lat(remote.loopback.latency),
    `local ${lat(remote.local.latency)}`,
    `+${remote.loopback.addedP50Us} us`,
  ]);
  if ("latency" in remote.namespaceHop) {
    rows.push([
      "remote warm p50 / p99, TLS, namespace hop",
      lat(remote.namespaceHop.latency),
      `local p50 ${remote.local.latency.p50Us} us`,
      `+${remote.namespaceHop.addedP50Us} us`,
    ]);
  }
  rows.push([
    "remote layer alone p50 (one process, no container)",
    `${remote.layer.layer.latency.p50Us} us`,
    `bare node:http2 ${remote.layer.bareHttp2.latency.p50Us} us`,
    `+${round(remote.layer.layer.latency.p50Us - remote.layer.bareHttp2.latency.p50Us)} us`,
  ]);
  rows.push([
    "remote throughput, 256 callers, loopback",
    `${remote.loopback.throughput256.callsPerSecond}/s`,
    `local ${remote.local.throughput256.callsPerSecond}/s`,
    `${ratio(remote.loopback.throughput256.callsPerSecond, remote.local.throughput256.callsPerSecond)}x`,
  ]);
  const obs = observability.modes;
  rows.push([
    "warm p50, logs + OpenTelemetry on (min-max)",
    `${obs.enabled.warmP50Us.median} us (${obs.enabled.warmP50Us.min}-${obs.enabled.warmP50Us.max})`,
    `off ${obs.disabled.warmP50Us.median} us (${obs.disabled.warmP50Us.min}-${obs.disabled.warmP50Us.max})`,
    `${observability.enabledVsDisabled.warmP50}x`,
  ]);
  rows.push([
    "throughput 256 callers, logs + OpenTelemetry on",
    `${obs.enabled.throughput256PerSecond.median}/s`,
    `off ${obs.disabled.throughput256PerSecond.median}/s`,
    `${observability.enabledVsDisabled.throughput256}x`,
  ]);
  rows.push([
    "warm p50, logs sink alone",
    `${obs.logs.warmP50Us.median} us`,
    `off ${obs.disabled.warmP50Us.median} us`,
    `${observability.logsVsDisabled.warmP50}x`,
  ]);
  rows.push([
    "warm p50, OpenTelemetry alone",
    `${obs.tracing.warmP50Us.median} us`,
    `off ${obs.disabled.warmP50Us.median} us`,
    `${observability.tracingVsDisabled.warmP50}x`,
  ]);
  rows.push([
    "warm p50, logs + OpenTelemetry, 1 trace in 10",
    `${obs.sampled.warmP50Us.median} us`,
    `off ${obs.disabled.warmP50Us.median} us`,
    `${observability.sampledVsDisabled.warmP50}x`,
  ]);
  rows.push([
    "warm p50, telemetry: true without an SDK",
    `${obs.noSdk.warmP50Us.median} us`,
    `off ${obs.disabled.warmP50Us.median} us`,
    `${observability.noSdkVsDisabled.warmP50}x`,
  ]);
  rows.push([
    "warm p50, logs + OpenTelemetry on, vs no context manager",
    `${obs.enabled.warmP50Us.median} us`,
    `bare ${obs.bare.warmP50Us.median} us`,
    `${observability.enabledVsBare.warmP50}x`,
  ]);
  rows.push([
    "telemetry subscribers' CPU per call, SDK / none",
    `${observability.subscriberCpuUs.sdk.median} us`,
    `${observability.subscriberCpuUs.noSdk.median} us`,
    "",
  ]);
  const widths = [0, 1, 2, 3].map((c) => Math.max(...rows.map((r) => r[c]?.length ?? 0), 8));
  const header: [string, string, string, string] = ["figure", "ociapp", "baseline", "ratio"];
  for (const row of [header, ...rows])
    console.log(row.map((cell, c) => cell.padEnd(widths[c] ?? 0)).join("  "));
  console.log(`\nwritten: ${RESULTS}`);
} finally {
  await rm(work, { recursive: true, force: true });
}
