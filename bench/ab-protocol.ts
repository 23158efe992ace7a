// Interleaved A/B benchmark of the wire protocol change (issue 11): protocol v1 (the container listens
// on a socket in a writable bind-mounted folder; the host connects) against protocol v2 (the runtime
// listens on one socket per container in a private folder, mounted read-only; `ociapp serve --connect`
// connects; hellos both ways; limits checked on the bytes). Measures warm p50/p99 and cold start per
// round, rounds alternating old/new, and reports per side the median and spread over the rounds.
//
// Rerun (old = 147231a, the last v1 commit; new = the commit under test, here main's HEAD):
//
//   git -C /work/main worktree add --detach /tmp/ab-old 147231a
//   git -C /work/main worktree add --detach /tmp/ab-new "$(git -C /work/main rev-parse HEAD)"
//   for t in /tmp/ab-old /tmp/ab-new; do (cd "$t" && pnpm install --frozen-lockfile && pnpm build); done
//   bash scripts/engine.sh
//   node --import tsx bench/ab-protocol.ts /tmp/ab-old /tmp/ab-new     # in /work/main; --help for flags
//   git -C /work/main worktree remove /tmp/ab-old; git -C /work/main worktree remove /tmp/ab-new
//
// What it does:
// - builds examples/echo-app with each tree's own ociapp-build CLI (so each artifact carries its own
//   SDK), recording the image as ociapp-ab/echo-app:<side>-<commit> so the load retags nobody's image;
//   `docker load`s both once before the rounds (cold start = first execute with the image already in
//   the engine) and removes exactly those two tags at the end;
// - each round is one child process (one side's ociapp-runtime dist imported by file URL, nothing of
//   the other side loaded, no JIT or heap state carried between rounds or sides; tsx runs it with a
//   tsconfig of no paths, else /work/main's paths would resolve a tree's `ociapp` imports to
//   /work/main/packages/ociapp/src, checked with strace: each tree loads only its own dist). In it: a first
//   Runtime makes one call and closes (`firstInProcessMs`: the process's first execute, module code
//   still cold); then a fresh Runtime (default confinement) measures the cold start (`coldMs`: its first
//   execute: engine ping, orphan sweep, container create/start, connect, hellos, one call), warm
//   p50/p99 over `--calls` sequential calls after `--warmup` calls, and close();
// - the old runtime gets a socketDir of its own under os.tmpdir() (its v1 default is os.tmpdir() itself;
//   a folder of our own keeps its path-based sweep away from anyone else's folders); the new runtime
//   uses its private default (/run/ociapp as root);
// - `--runs` runs (default 2); run 1 starts with old (O N O N ...), run 2 with new (N O N O ...), so an
//   order effect would show as a difference between the runs;
// - "within the spread": the new median lies within the old side's min–max over the rounds of that
//   run (withinIqr: within its p25–p75, stricter);
// - the load average (/proc/loadavg) is recorded at the start and end of each run and before each round.
//
// Writes bench/ab-protocol.json (then biome-formatted) and prints a table per run.

import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { type Latency, measureLatency, round, timeIt } from "./measure.js";

const execFileAsync = promisify(execFile);
const THIS_FILE = fileURLToPath(import.meta.url);
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const DEFAULT_OUT = fileURLToPath(new URL("./ab-protocol.json", import.meta.url));
const RUNTIME_DIST = "packages/ociapp-runtime/dist/index.js";
const BUILD_CLI = "packages/ociapp-build/bin/ociapp-build.js";
const PAYLOAD = { value: "hello" };
const SIDES = ["old", "new"] as const;
type Side = (typeof SIDES)[number];

/** The part of either side's Runtime this benchmark uses (typed loosely: the two builds differ). */
interface RuntimeLike {
  readonly id: string;
  execute(path: string, request: unknown): Promise<unknown>;
  stats(): { artifacts: { imageLoads: number }[] };
  close(): Promise<void>;
}

interface RuntimeModule {
  Runtime: new (options?: { socketDir?: string }) => RuntimeLike;
}

interface ChildSpec {
  side: Side;
  tree: string;
  artifact: string;
  /** the old runtime's socketDir; undefined: the runtime's default */
  socketDir?: string;
  calls: number;
  warmup: number;
}

interface RoundResult {
  side: Side;
  pid: number;
  runtimeIds: string[];
  firstInProcessMs: number;
  coldMs: number;
  /** image loads the two Runtimes made (0 when the engine held the image, as intended) */
  imageLoads: number;
  latency: Latency;
  closeMs: number;
}

interface Options {
  oldTree: string;
  newTree: string;
  rounds: number;
  runs: number;
  calls: number;
  warmup: number;
  out: string;
}

const USAGE = `usage: node --import tsx bench/ab-protocol.ts <old-tree> <new-tree> [flags]
  <old-tree>, <new-tree>  worktrees with pnpm install and pnpm build done (packages/*/dist)
  --rounds N   rounds per run, alternating sides (default 20: 10 per side)
  --runs N     runs (default 2; run 1 starts with old, run 2 with new, ...)
  --calls N    sequential warm calls per round (default 3000)
  --warmup N   calls before the warm measurement (default 200)
  --out FILE   results (default bench/ab-protocol.json)`;

function parseArgs(argv: string[]): Options {
  const positional: string[] = [];
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "--help" || arg === "-h") {
      console.log(USAGE);
      process.exit(0);
    }
    if (arg.startsWith("--")) {
      const value = argv[++i];
      if (value === undefined) throw new Error(`${arg} needs a value\n${USAGE}`);
      flags.set(arg.slice(2), value);
    } else positional.push(arg);
  }
  const [oldTree, newTree] = positional;
  if (oldTree === undefined || newTree === undefined || positional.length > 2) throw new Error(USAGE);
  const count = (name: string, fallback: number) => {
    const value = Number(flags.get(name) ?? fallback);
    if (!Number.isSafeInteger(value) || value < 1) throw new Error(`--${name} must be a positive integer`);
    return value;
  };
  for (const name of flags.keys()) {
    if (!["rounds", "runs", "calls", "warmup", "out"].includes(name))
      throw new Error(`unknown flag --${name}`);
  }
  return {
    oldTree: resolve(oldTree),
    newTree: resolve(newTree),
    rounds: count("rounds", 20),
    runs: count("runs", 2),
    calls: count("calls", 3000),
    warmup: count("warmup", 200),
    out: resolve(flags.get("out") ?? DEFAULT_OUT),
  };
}

// ---- child: one round of one side ----

async function runChild(spec: ChildSpec): Promise<RoundResult> {
  const { Runtime } = (await import(pathToFileURL(join(spec.tree, RUNTIME_DIST)).href)) as RuntimeModule;
  const options = spec.socketDir === undefined ? {} : { socketDir: spec.socketDir };
  const runtimeIds: string[] = [];
  let imageLoads = 0;

  const first = new Runtime(options);
  runtimeIds.push(first.id);
  let firstInProcessMs: number;
  try {
    firstInProcessMs = (await timeIt(() => first.execute(spec.artifact, PAYLOAD))).ms;
    imageLoads += first.stats().artifacts[0]?.imageLoads ?? 0;
  } finally {
    await first.close();
  }

  const runtime = new Runtime(options);
  runtimeIds.push(runtime.id);
  let coldMs: number;
  let latency: Latency;
  let closeMs: number;
  try {
    const cold = await timeIt(() => runtime.execute(spec.artifact, PAYLOAD));
    if (JSON.stringify(cold.value) !== JSON.stringify(PAYLOAD)) {
      throw new Error(`the echo answered ${JSON.stringify(cold.value)}`);
    }
    coldMs = cold.ms;
    imageLoads += runtime.stats().artifacts[0]?.imageLoads ?? 0;
    latency = await measureLatency(() => runtime.execute(spec.artifact, PAYLOAD), spec.calls, spec.warmup);
  } finally {
    closeMs = (await timeIt(() => runtime.close())).ms;
  }
  return {
    side: spec.side,
    pid: process.pid,
    runtimeIds,
    firstInProcessMs,
    coldMs,
    imageLoads,
    latency,
    closeMs,
  };
}

// ---- parent ----

function log(message: string): void {
  process.stderr.write(`[ab] ${message}\n`);
}

async function run(command: string, args: string[], cwd?: string): Promise<string> {
  return (await execFileAsync(command, args, { cwd, maxBuffer: 16 * 1024 * 1024 })).stdout.trim();
}

async function loadavg(): Promise<string> {
  return (await readFile("/proc/loadavg", "utf8")).trim();
}

async function hasImage(reference: string): Promise<boolean> {
  return run("docker", ["image", "inspect", "--format", "{{.Id}}", reference]).then(
    () => true,
    () => false,
  );
}

interface Artifact {
  side: Side;
  tree: string;
  commit: string;
  path: string;
  digest: string;
  image: string;
  bytes: number;
  digestPresentBeforeLoad: boolean;
}

async function buildArtifact(side: Side, tree: string, outputDir: string): Promise<Artifact> {
  const commit = await run("git", ["-C", tree, "rev-parse", "HEAD"]);
  const image = `ociapp-ab/echo-app:${side}-${commit.slice(0, 12)}`;
  for (const file of [RUNTIME_DIST, BUILD_CLI]) {
    if (!existsSync(join(tree, file)))
      throw new Error(`${tree} has no ${file}: run pnpm install and pnpm build`);
  }
  const built = JSON.parse(
    await run(
      process.execPath,
      [
        join(tree, BUILD_CLI),
        join(tree, "examples/echo-app"),
        "--output-dir",
        outputDir,
        "--network",
        "host",
        "--progress",
        "quiet",
        "--image",
        image,
        "--json",
      ],
      tree,
    ),
  ) as { path: string; bytes: number; digest: string };
  return {
    side,
    tree,
    commit,
    path: built.path,
    digest: built.digest,
    image,
    bytes: built.bytes,
    digestPresentBeforeLoad: await hasImage(built.digest),
  };
}

function runRound(spec: ChildSpec, tsconfig: string): Promise<RoundResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, THIS_FILE, "--child", JSON.stringify(spec)], {
      stdio: ["ignore", "pipe", "inherit"],
      // tsx (which runs this file) would map the trees' `ociapp` imports through /work/main's tsconfig
      // paths to /work/main's sources: a tsconfig without paths leaves each tree's node_modules to decide.
      env: { ...process.env, TSX_TSCONFIG_PATH: tsconfig },
    });
    let out = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      out += chunk;
    });
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const line = out.trim().split("\n").at(-1) ?? "";
      if (code !== 0) {
        reject(new Error(`the ${spec.side} round's process exited with ${code ?? signal}: ${out.trim()}`));
        return;
      }
      try {
        resolvePromise(JSON.parse(line) as RoundResult);
      } catch (error) {
        reject(new Error(`the ${spec.side} round printed no result (${String(error)}): ${out.trim()}`));
      }
    });
  });
}

/** Containers a round's runtimes left behind (none expected), removed. */
async function removeLeftovers(runtimeIds: string[]): Promise<number> {
  let removed = 0;
  for (const id of runtimeIds) {
    const listed = await run("docker", ["ps", "-aq", "--filter", `label=dev.ociapp.runtime=${id}`]);
    for (const container of listed.split("\n").filter(Boolean)) {
      await run("docker", ["rm", "-f", container]).catch(() => "");
      removed++;
    }
  }
  return removed;
}

export interface Spread {
  n: number;
  median: number;
  p25: number;
  p75: number;
  min: number;
  max: number;
}

/** Linear-interpolated quantile (R type 7) of sorted values. */
function quantile(sorted: number[], q: number): number {
  const position = (sorted.length - 1) * q;
  const low = Math.floor(position);
  const high = Math.ceil(position);
  const a = sorted[low] ?? Number.NaN;
  const b = sorted[high] ?? Number.NaN;
  return a + (b - a) * (position - low);
}

function spread(values: number[]): Spread {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    n: sorted.length,
    median: round(quantile(sorted, 0.5)),
    p25: round(quantile(sorted, 0.25)),
    p75: round(quantile(sorted, 0.75)),
    min: round(sorted[0] ?? Number.NaN),
    max: round(sorted.at(-1) ?? Number.NaN),
  };
}

interface Comparison {
  old: Spread;
  new: Spread;
  /** new median / old median */
  ratio: number;
  /** the new median within the old side's min–max */
  withinSpread: boolean;
  /** the new median within the old side's p25–p75 */
  withinIqr: boolean;
}

function compare(oldValues: number[], newValues: number[]): Comparison {
  const a = spread(oldValues);
  const b = spread(newValues);
  return {
    old: a,
    new: b,
    ratio: round(b.median / a.median, 3),
    withinSpread: b.median >= a.min && b.median <= a.max,
    withinIqr: b.median >= a.p25 && b.median <= a.p75,
  };
}

const METRICS = {
  coldMs: (r: RoundResult) => r.coldMs,
  firstInProcessMs: (r: RoundResult) => r.firstInProcessMs,
  warmP50Us: (r: RoundResult) => r.latency.p50Us,
  warmP99Us: (r: RoundResult) => r.latency.p99Us,
  closeMs: (r: RoundResult) => r.closeMs,
} as const;
type Metric = keyof typeof METRICS;

function summarize(rounds: RoundResult[]): Record<Metric, Comparison> {
  const of = (side: Side, metric: Metric) => rounds.filter((r) => r.side === side).map(METRICS[metric]);
  const entries = (Object.keys(METRICS) as Metric[]).map(
    (metric) => [metric, compare(of("old", metric), of("new", metric))] as const,
  );
  return Object.fromEntries(entries) as Record<Metric, Comparison>;
}

function printTable(title: string, summary: Record<Metric, Comparison>): void {
  const show = (s: Spread) => `${s.median} [${s.p25}–${s.p75}] (${s.min}–${s.max})`;
  const labels: Record<Metric, string> = {
    coldMs: "cold start, ms",
    firstInProcessMs: "first in process, ms",
    warmP50Us: "warm p50, µs",
    warmP99Us: "warm p99, µs",
    closeMs: "close(), ms",
  };
  const rows: string[][] = [
    ["metric", "old median [p25–p75] (min–max)", "new median [p25–p75] (min–max)", "new/old", "verdict"],
  ];
  for (const metric of Object.keys(METRICS) as Metric[]) {
    const c = summary[metric];
    const verdict = c.withinIqr ? "within IQR" : c.withinSpread ? "within min–max" : "OUTSIDE spread";
    rows.push([labels[metric], show(c.old), show(c.new), `${c.ratio}x`, verdict]);
  }
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => row[column]?.length ?? 0))) ?? [];
  console.log(`\n${title}`);
  for (const row of rows) console.log(row.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join("  "));
}

async function main(options: Options): Promise<void> {
  const startedAt = new Date().toISOString();
  const work = await mkdtemp(join(tmpdir(), "ociapp-ab-"));
  const socketDir = join(work, "sock");
  const loaded: string[] = [];
  try {
    await run("mkdir", ["-p", socketDir, join(work, "old"), join(work, "new")]);
    const tsconfig = join(work, "tsconfig.json");
    await writeFile(tsconfig, "{}\n");
    log("building examples/echo-app with each tree's own ociapp-build");
    const artifacts = {
      old: await buildArtifact("old", options.oldTree, join(work, "old")),
      new: await buildArtifact("new", options.newTree, join(work, "new")),
    };
    for (const side of SIDES) {
      const artifact = artifacts[side];
      log(`${side}: ${artifact.commit.slice(0, 12)} ${artifact.digest}; docker load ${artifact.image}`);
      await run("docker", ["load", "-q", "-i", artifact.path]);
      loaded.push(artifact.image);
    }

    const runs = [];
    for (let r = 0; r < options.runs; r++) {
      const loadStart = await loadavg();
      const startSide: Side = r % 2 === 0 ? "old" : "new";
      log(`run ${r + 1}: ${options.rounds} rounds starting with ${startSide}; loadavg ${loadStart}`);
      const rounds: (RoundResult & {
        round: number;
        loadavg: string;
        reloaded: boolean;
        leftovers: number;
      })[] = [];
      for (let i = 0; i < options.rounds; i++) {
        const side: Side = (i % 2 === 0) === (startSide === "old") ? "old" : "new";
        const artifact = artifacts[side];
        const before = await loadavg();
        // Someone else's `docker image rm -f <digest>` would turn the cold start into a load: put it back.
        const reloaded = !(await hasImage(artifact.digest));
        if (reloaded) await run("docker", ["load", "-q", "-i", artifact.path]);
        const result = await runRound(
          {
            side,
            tree: artifact.tree,
            artifact: artifact.path,
            socketDir: side === "old" ? socketDir : undefined,
            calls: options.calls,
            warmup: options.warmup,
          },
          tsconfig,
        );
        const leftovers = await removeLeftovers(result.runtimeIds);
        rounds.push({ round: i + 1, loadavg: before, reloaded, leftovers, ...result });
        log(
          `  ${i + 1}/${options.rounds} ${side}: cold ${result.coldMs} ms (first in process ${result.firstInProcessMs} ms), ` +
            `warm p50 ${result.latency.p50Us} µs p99 ${result.latency.p99Us} µs; loadavg ${before.split(" ").slice(0, 3).join(" ")}` +
            (result.imageLoads > 0 || reloaded ? " [IMAGE LOADED IN ROUND]" : "") +
            (leftovers > 0 ? ` [${leftovers} LEFTOVER CONTAINERS]` : ""),
        );
      }
      const loadEnd = await loadavg();
      const summary = summarize(rounds);
      printTable(
        `run ${r + 1} (${startSide} first, ${options.rounds} rounds, ${options.calls} warm calls each); loadavg ${loadStart} -> ${loadEnd}`,
        summary,
      );
      runs.push({
        run: r + 1,
        order: startSide === "old" ? "O N O N ..." : "N O N O ...",
        loadavgStart: loadStart,
        loadavgEnd: loadEnd,
        summary,
        anomalies: {
          roundsWithImageLoad: rounds.filter((x) => x.imageLoads > 0 || x.reloaded).map((x) => x.round),
          leftoverContainers: rounds.reduce((sum, x) => sum + x.leftovers, 0),
        },
        rounds: rounds.map((x) => ({
          round: x.round,
          side: x.side,
          loadavg: x.loadavg,
          coldMs: x.coldMs,
          firstInProcessMs: x.firstInProcessMs,
          warmP50Us: x.latency.p50Us,
          warmP99Us: x.latency.p99Us,
          warmMeanUs: x.latency.meanUs,
          closeMs: x.closeMs,
          imageLoads: x.imageLoads,
        })),
      });
    }

    const leftoverFolders = await readdir(socketDir);
    const results = {
      issue: 11,
      measuredAt: startedAt,
      machine: {
        cpus: `${cpus().length} x ${cpus()[0]?.model ?? "?"}`,
        node: process.version,
        engine: await run("docker", ["version", "--format", "{{.Server.Version}}"]),
      },
      method: {
        rounds: options.rounds,
        callsPerRound: options.calls,
        warmupCalls: options.warmup,
        payload: PAYLOAD,
        roundProcess:
          "one child process per round; first Runtime: one call, close (firstInProcessMs); fresh Runtime: first execute (coldMs), warm-up, sequential calls (warm p50/p99), close (closeMs)",
        withinSpread: "the new median lies within the old side's min–max over the run's rounds",
        withinIqr: "the new median lies within the old side's p25–p75",
      },
      sides: Object.fromEntries(
        SIDES.map((side) => [
          side,
          {
            commit: artifacts[side].commit,
            tree: artifacts[side].tree,
            digest: artifacts[side].digest,
            artifactBytes: artifacts[side].bytes,
            socketDir: side === "old" ? "own folder under os.tmpdir()" : "the runtime's private default",
          },
        ]),
      ),
      runs,
      leftoverSocketFolders: leftoverFolders.length,
    };
    await writeFile(options.out, `${JSON.stringify(results, null, 2)}\n`);
    // As `pnpm lint` wants it (short arrays on one line); biome only formats files inside the repo.
    if (options.out.startsWith(ROOT)) {
      await run(join(ROOT, "node_modules/.bin/biome"), ["format", "--write", options.out], ROOT).catch(
        (error) => log(`biome format ${options.out} failed: ${String(error)}`),
      );
    }
    console.log(`\nwritten: ${options.out}`);
  } finally {
    for (const image of loaded) await run("docker", ["image", "rm", image]).catch(() => "");
    await rm(work, { recursive: true, force: true });
  }
}

const childIndex = process.argv.indexOf("--child");
if (childIndex >= 0) {
  const result = await runChild(JSON.parse(process.argv[childIndex + 1] ?? "") as ChildSpec);
  process.stdout.write(`${JSON.stringify(result)}\n`);
} else {
  process.chdir(ROOT);
  await main(parseArgs(process.argv.slice(2)));
}
