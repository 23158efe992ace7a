import { execFile } from "node:child_process";
import { runCli as runCliInProcess } from "../../src/cli.js";
import { CLI_ENTRY } from "./paths.js";

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface RunCliOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  timeout?: number;
  /** a command the CLI runs under, e.g. ["unshare", "-m", ...]: the node command line is appended */
  wrapper?: string[];
}

/** Runs `ociapp-build <args>` as a child process, from sources. */
export function runCli(args: string[], options: RunCliOptions = {}): Promise<CliResult> {
  const command = [process.execPath, "--conditions=source", "--import", "tsx", CLI_ENTRY, ...args];
  const [file = process.execPath, ...argv] = [...(options.wrapper ?? []), ...command];
  return new Promise((resolve) => {
    execFile(
      file,
      argv,
      {
        env: options.env ?? process.env,
        cwd: options.cwd,
        timeout: options.timeout ?? 600_000,
        maxBuffer: 64 << 20,
      },
      (error, stdout, stderr) => {
        const code = (error as { code?: unknown } | null)?.code;
        resolve({ exitCode: typeof code === "number" ? code : error ? 1 : 0, stdout, stderr });
      },
    );
  });
}

/** Runs the CLI's main path in this process with captured output: the same code, without a Node start-up. */
export async function runCliHere(args: string[]): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  const exitCode = await runCliInProcess(["node", "ociapp-build", ...args], {
    stdout: { write: (chunk: string) => (stdout += chunk) },
    stderr: { write: (chunk: string) => (stderr += chunk) },
  });
  return { exitCode, stdout, stderr };
}
