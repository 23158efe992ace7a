import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const PACKAGE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const CLI_ENTRY = join(PACKAGE_DIR, "tests/helpers/cli-entry.ts");
export const BEHAVIOUR_APP = "tests/fixtures/behaviour-app.ts";

export interface ServerProcess {
  readonly child: ChildProcess;
  readonly socketPath: string;
  readonly dir: string;
  /** Everything the process wrote to stderr so far. */
  stderr(): string;
  /** Everything the process wrote to stdout so far. */
  stdout(): string;
  /** Resolves with the exit code (or signal) once the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(): Promise<void>;
}

const running = new Set<ServerProcess>();

/** Kills every process startCli started that is still running (for afterAll, whatever failed). */
export async function killAll(): Promise<void> {
  await Promise.all([...running].map((server) => server.kill()));
}

/**
 * Starts `ociapp serve` from the TypeScript sources as a child process, in cwd = the package folder:
 * listen mode on <dir>/app.sock unless options say otherwise. Resolves once it says "serving" (in
 * connect mode: once it has connected).
 */
export function startCli(
  args: string[],
  options: {
    env?: Record<string, string>;
    waitForListening?: boolean;
    cwd?: string;
    /** Run this bin (the installed layout) instead of the TypeScript sources. */
    bin?: string;
    nodeArgs?: string[];
    /** Connect mode: --connect this path instead of --socket <dir>/app.sock. */
    connect?: string;
    /** Neither --socket nor --connect (they come from args or the environment). */
    noSocket?: boolean;
    /** A command the process runs under (e.g. unshare): the node command line is appended. */
    wrapper?: string[];
  } = {},
): Promise<ServerProcess> {
  const dir = mkdtempSync(join(tmpdir(), "ociapp-serve-"));
  const socketPath = join(dir, "app.sock");
  const where = options.noSocket
    ? []
    : options.connect === undefined
      ? ["--socket", socketPath]
      : ["--connect", options.connect];
  const command = [
    process.execPath,
    ...(options.nodeArgs ?? (options.bin ? [] : ["--conditions=source", "--import", "tsx"])),
    options.bin ?? CLI_ENTRY,
    "serve",
    ...where,
    ...args,
  ];
  const [file = process.execPath, ...argv] = [...(options.wrapper ?? []), ...command];
  const child = spawn(file, argv, {
    cwd: options.cwd ?? PACKAGE_DIR,
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  let stdout = "";
  child.stderr!.setEncoding("utf8");
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit) => {
    child.once("exit", (code, signal) => {
      running.delete(handle);
      rmSync(dir, { recursive: true, force: true });
      resolveExit({ code, signal });
    });
  });
  const handle: ServerProcess = {
    child,
    socketPath,
    dir,
    stderr: () => stderr,
    stdout: () => stdout,
    exited,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
  running.add(handle);
  return new Promise((resolveStart, rejectStart) => {
    let settled = false;
    child.stderr!.on("data", (chunk: string) => {
      stderr += chunk;
      if (!settled && stderr.includes("ociapp: serving ")) {
        settled = true;
        resolveStart(handle);
      }
    });
    if (options.waitForListening === false) {
      settled = true;
      resolveStart(handle);
    }
    void exited.then(({ code, signal }) => {
      if (!settled) {
        settled = true;
        rejectStart(new Error(`server exited (${code ?? signal}) before listening: ${stderr}`));
      }
    });
  });
}
