import { spawn } from "node:child_process";
import { access, mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BuildError, build } from "../src/index.js";
import { runCli } from "./helpers/cli.js";
import { CLI_ENTRY, FIXTURES } from "./helpers/paths.js";

// Failures that need the real docker CLI and engine: a failing build step, buildx missing, and
// builds stopped half-way. None may leave an artifact or a temporary file behind.

let work = "";
let outputDir = "";
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "ociapp-build-engine-errors-"));
  outputDir = join(work, "out");
  await mkdir(outputDir);
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const fixture = (name: string) => join(FIXTURES, "errors", name);

/** Processes on this host (the engine's build steps included) whose command line contains `text`. */
async function processesMentioning(text: string): Promise<number> {
  let count = 0;
  for (const pid of await readdir("/proc")) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (cmdline.includes(text) && !cmdline.includes("vitest")) count++;
  }
  return count;
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe("a failing build step", () => {
  it("rejects with OCIAPP_BUILD_FAILED naming the step and carrying its output", async () => {
    const error = await build({ projectRoot: fixture("failing-build"), outputDir }).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(BuildError);
    const buildError = error as BuildError;
    expect(buildError.code).toBe("OCIAPP_BUILD_FAILED");
    expect(buildError.message).toMatch(
      /^image build failed at \[.*2\/2\] RUN echo "compiling the frobnicator".*exit code: 3$/,
    );
    expect(buildError.output).toContain("compiling the frobnicator");
    expect(buildError.output).toContain("frobnicator: missing header");
    expect(await readdir(outputDir)).toEqual([]);
  });

  it("the CLI prints one error line, then the step's output, and exits 1", async () => {
    const result = await runCli([fixture("failing-build"), "--output-dir", outputDir, "--progress", "quiet"]);
    expect(result.exitCode).toBe(1);
    const lines = result.stderr.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^ociapp-build: error: image build failed at .*RUN echo .*exit code: 3$/);
    expect(lines.slice(1)).toContain("  | frobnicator: missing header");
    expect(await readdir(outputDir)).toEqual([]);
  });
});

describe("docker buildx missing", () => {
  it("names what to install", async () => {
    // Hide the real plugin from the real docker CLI: an empty folder mounted over its plugin folder,
    // in a private mount namespace of the CLI's process only.
    const pluginDirs = [
      "/usr/libexec/docker/cli-plugins",
      "/usr/lib/docker/cli-plugins",
      "/usr/local/libexec/docker/cli-plugins",
      "/usr/local/lib/docker/cli-plugins",
    ];
    const present: string[] = [];
    for (const dir of pluginDirs) {
      if (
        await access(join(dir, "docker-buildx")).then(
          () => true,
          () => false,
        )
      )
        present.push(dir);
    }
    const empty = join(work, "no-plugins");
    await mkdir(empty);
    const mounts = present.map((dir) => `mount --bind ${empty} ${dir}`).join(" && ");
    const result = await runCli([fixture("failing-build"), "--output-dir", outputDir], {
      env: { ...process.env, DOCKER_CONFIG: join(work, "docker-config") },
      wrapper: ["unshare", "--mount", "sh", "-c", `${mounts} && exec "$@"`, "sh"],
    });
    expect(result.exitCode).toBe(1);
    expect(result.stderr.trimEnd()).toMatch(
      /^ociapp-build: error: docker buildx is not available \(.*buildx.*\): install the buildx plugin \(Debian\/Ubuntu: docker-buildx; Docker's repository: docker-buildx-plugin\)$/,
    );
  });
});

describe("stopping a build half-way", () => {
  it("an aborted signal kills buildx and the build step, and leaves nothing behind", async () => {
    const controller = new AbortController();
    let log = "";
    let stepRunning: () => void = () => undefined;
    const running = new Promise<void>((resolve) => {
      stepRunning = resolve;
    });
    const started = performance.now();
    const pending = build({
      projectRoot: fixture("slow-build"),
      outputDir,
      noCache: true,
      progress: "plain",
      signal: controller.signal,
      onProgress: (chunk) => {
        log += chunk;
        // The step's own output (timestamped): its shell is running `sleep 120` now.
        if (/^#\d+ \d+\.\d+ started-slow-step$/m.test(log)) stepRunning();
      },
    }).catch((caught: unknown) => caught);
    await running;
    expect(await processesMentioning("started-slow-step")).toBeGreaterThan(0);
    controller.abort(new Error("stop it"));

    const error = await pending;
    expect((error as BuildError).code).toBe("OCIAPP_BUILD_ABORTED");
    expect(((error as BuildError).cause as Error).message).toBe("stop it");
    // The step sleeps 120 s: the build ended because it was stopped.
    expect(performance.now() - started).toBeLessThan(100_000);
    expect(await readdir(outputDir)).toEqual([]);
    // BuildKit cancels the step once buildx is gone: its shell leaves the host's process table.
    await waitUntil(async () => (await processesMentioning("started-slow-step")) === 0, 30_000);
  });

  it("SIGINT stops the CLI with exit code 130 and leaves nothing behind", async () => {
    const child = spawn(
      process.execPath,
      [
        "--conditions=source",
        "--import",
        "tsx",
        CLI_ENTRY,
        fixture("slow-build"),
        "-o",
        outputDir,
        "--no-cache",
        "--progress",
        "plain",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stderr = "";
    let interrupted = false;
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
      // A second Ctrl-C must not skip the cleanup either: send two.
      if (!interrupted && stderr.includes("started-slow-step")) {
        interrupted = true;
        child.kill("SIGINT");
        setTimeout(() => child.kill("SIGINT"), 200).unref();
      }
    });
    expect(await exited).toBe(130);
    expect(stderr.trimEnd().split("\n").at(-1)).toBe("ociapp-build: error: build aborted");
    expect(await readdir(outputDir)).toEqual([]);
    await waitUntil(async () => (await processesMentioning("started-slow-step")) === 0, 30_000);
  });
});
