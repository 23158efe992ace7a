import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

// Restarts the Docker daemon this machine runs (started by scripts/engine.sh as a detached
// `dockerd`, its pid in /var/run/docker.pid). Only the disruptive test project uses this: it takes
// the engine away from everything else.

const execFileAsync = promisify(execFile);
const ENGINE_SCRIPT = fileURLToPath(new URL("../../../../scripts/engine.sh", import.meta.url));
const PID_FILE = "/var/run/docker.pid";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== "ESRCH";
  }
}

export async function daemonPid(): Promise<number> {
  const pid = Number((await readFile(PID_FILE, "utf8")).trim());
  if (!Number.isInteger(pid) || pid <= 1) throw new Error(`${PID_FILE} holds no pid`);
  return pid;
}

/** SIGTERMs dockerd and resolves once the process is gone (within `timeoutMs`), with the time it took. */
export async function stopDaemon(timeoutMs = 60_000): Promise<{ pid: number; stopMs: number }> {
  const pid = await daemonPid();
  const started = performance.now();
  process.kill(pid, "SIGTERM");
  while (alive(pid)) {
    if (performance.now() - started > timeoutMs) {
      throw new Error(`dockerd (pid ${pid}) was still running ${timeoutMs} ms after SIGTERM`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { pid, stopMs: performance.now() - started };
}

/** Starts dockerd if it is not running and waits until it answers (scripts/engine.sh is idempotent). */
export async function startDaemon(): Promise<{ startMs: number }> {
  const started = performance.now();
  await execFileAsync("bash", [ENGINE_SCRIPT, "engine"], { timeout: 120_000 });
  return { startMs: performance.now() - started };
}

export async function daemonAnswers(): Promise<boolean> {
  try {
    await execFileAsync("docker", ["info", "--format", "{{.ServerVersion}}"], { timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}
