// Build figures (issue 15 part 5): how long `ociapp-build` takes to rebuild an app whose inputs did
// not change (the artifact is reused: buildx does not run) and one whose source changed by one line,
// for examples/echo-app (TypeScript: its build script, tsc, runs on every build) and for the same app
// without a build script. With `sizes`, also examples/sqlite-app's artifact size, managed against
// hand-written two-stage and single-stage Containerfiles. Nothing is asserted.
// Run alone: node --conditions=source --import tsx bench/build.ts [--sizes] [--rounds N]

import { cp, mkdir, mkdtemp, readdir, readFile, realpath, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type BuildOptions, type BuildPhase, type BuildResult, build } from "ociapp-build";
import { buildHandwritten, SQLITE_APP } from "../tests/engine/sqlite-handwritten.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const ECHO_APP = join(ROOT, "examples/echo-app");

export interface RebuildFigures {
  /** ms per build: median, min, max of `rounds` */
  totalMs: { median: number; min: number; max: number };
  /** ms after the app's build script and the SDK's packing ended (staging, digest, buildx if any): median */
  afterScriptMs: number;
  rounds: number;
  /** whether every round reused the artifact (buildx not run) */
  reused: boolean;
}

export interface BuildFigures {
  app: string;
  /** the first build in a fresh output folder (buildx's layer cache may already hold its layers), ms */
  firstBuildMs: number;
  noChange: RebuildFigures;
  oneLineChange: RebuildFigures;
  /** the same app with dist/ prebuilt and no build script */
  noChangeWithoutScript: RebuildFigures;
  /** examples/sqlite-app, bytes: managed build, hand-written two-stage, hand-written single-stage */
  sqliteSizes?: { managed: number; twoStage: number; singleStage: number };
}

const round1 = (ms: number) => Math.round(ms * 10) / 10;

function summary(times: number[], afterScript: number[], reused: boolean[]): RebuildFigures {
  const sorted = (values: number[]) => [...values].sort((a, b) => a - b);
  const mid = (values: number[]) => round1(sorted(values)[Math.floor(values.length / 2)] ?? Number.NaN);
  return {
    totalMs: { median: mid(times), min: round1(Math.min(...times)), max: round1(Math.max(...times)) },
    afterScriptMs: mid(afterScript),
    rounds: times.length,
    reused: reused.every(Boolean),
  };
}

/** One build, timed: total, and from the "staging" phase (the script and packing done) to the end. */
async function timedBuild(
  options: BuildOptions,
): Promise<{ ms: number; afterScriptMs: number; result: BuildResult }> {
  const started = performance.now();
  let staging = started;
  const result = await build({
    ...options,
    onPhase: (phase: BuildPhase) => {
      if (phase.phase === "staging") staging = performance.now();
    },
  });
  const ended = performance.now();
  return { ms: ended - started, afterScriptMs: ended - staging, result };
}

/**
 * A copy of examples/echo-app outside the workspace whose node_modules entries link to the
 * workspace's installed packages (so its tsc and SDK resolve as in the example), and whose tsconfig
 * extends the repository's base config by absolute path. The bench edits this copy, never the example.
 */
async function echoAppCopy(dir: string, withScript: boolean): Promise<void> {
  await mkdir(join(dir, "node_modules"), { recursive: true });
  await cp(join(ECHO_APP, "src"), join(dir, "src"), { recursive: true });
  const tsconfig = JSON.parse(await readFile(join(ECHO_APP, "tsconfig.json"), "utf8")) as { extends: string };
  tsconfig.extends = join(ROOT, "tsconfig.base.json");
  await writeFile(join(dir, "tsconfig.json"), JSON.stringify(tsconfig, null, 2));
  const pkg = JSON.parse(await readFile(join(ECHO_APP, "package.json"), "utf8")) as Record<string, unknown>;
  if (!withScript) {
    delete pkg.scripts;
    await cp(join(ECHO_APP, "dist"), join(dir, "dist"), { recursive: true });
  }
  await writeFile(join(dir, "package.json"), JSON.stringify(pkg, null, 2));
  for (const entry of await readdir(join(ECHO_APP, "node_modules"))) {
    await symlink(await realpath(join(ECHO_APP, "node_modules", entry)), join(dir, "node_modules", entry));
  }
}

/**
 * Measures no-change and one-line-change rebuilds of examples/echo-app (and, with `sizes`, the
 * sqlite-app sizes). `rounds` per figure (the one-line change: at most 3, each a real buildx run).
 */
export async function measureBuilds(
  options: { rounds?: number; sizes?: boolean; network?: string } = {},
  log: (line: string) => void = () => undefined,
): Promise<BuildFigures> {
  const rounds = options.rounds ?? 5;
  const network = options.network ?? "host";
  const work = await mkdtemp(join(tmpdir(), "ociapp-bench-build-"));
  try {
    const project = join(work, "echo-app");
    const plain = join(work, "echo-app-no-script");
    await echoAppCopy(project, true);
    await echoAppCopy(plain, false);
    const outputDir = join(work, "out");
    const image = `ociapp-bench/echo-app:${process.pid}`;
    const common = { outputDir, network, image } as const;

    log("build: first build of examples/echo-app (a copy)");
    const first = await timedBuild({ projectRoot: project, ...common });
    const rebuilds = async (
      projectRoot: string,
      edit?: (round: number) => Promise<void>,
      count = rounds,
      out = outputDir,
    ) => {
      const times: number[] = [];
      const after: number[] = [];
      const reused: boolean[] = [];
      for (let round = 0; round < count; round++) {
        await edit?.(round);
        const timed = await timedBuild({ projectRoot, ...common, outputDir: out });
        times.push(timed.ms);
        after.push(timed.afterScriptMs);
        reused.push(timed.result.reused);
      }
      return summary(times, after, reused);
    };
    log(`build: ${rounds} no-change rebuilds`);
    const noChange = await rebuilds(project);
    log("build: one-line-change rebuilds");
    const source = await readFile(join(project, "src/main.ts"), "utf8");
    const oneLineChange = await rebuilds(
      project,
      (round) =>
        writeFile(join(project, "src/main.ts"), `${source}export const benchRevision = ${round + 1};\n`),
      Math.min(rounds, 3),
    );
    log("build: the same app without a build script");
    await timedBuild({ projectRoot: plain, ...common, outputDir: join(work, "out-plain") });
    const noChangeWithoutScript = await rebuilds(plain, undefined, rounds, join(work, "out-plain"));

    const figures: BuildFigures = {
      app: "examples/echo-app",
      firstBuildMs: round1(first.ms),
      noChange,
      oneLineChange,
      noChangeWithoutScript,
    };
    if (options.sizes) {
      log("build: sqlite-app, managed (compiles better-sqlite3 unless cached)");
      const managed = await build({ projectRoot: SQLITE_APP, outputDir: join(work, "sqlite"), network });
      log("build: sqlite-app, hand-written two-stage and single-stage");
      const twoStage = await buildHandwritten("two-stage", join(work, "sqlite"), { network });
      const singleStage = await buildHandwritten("single-stage", join(work, "sqlite"), { network });
      figures.sqliteSizes = {
        managed: managed.bytes,
        twoStage: twoStage.bytes,
        singleStage: singleStage.bytes,
      };
    }
    return figures;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const roundsAt = args.indexOf("--rounds");
  const figures = await measureBuilds(
    { sizes: args.includes("--sizes"), ...(roundsAt >= 0 ? { rounds: Number(args[roundsAt + 1]) } : {}) },
    (line) => process.stderr.write(`[bench] ${line}\n`),
  );
  console.log(JSON.stringify(figures, null, 2));
}
