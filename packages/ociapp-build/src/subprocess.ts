import { execa } from "execa";
import { BuildError, type BuildErrorCode } from "./errors.js";

export interface RunOptions {
  cwd?: string;
  signal?: AbortSignal | undefined;
  env?: Record<string, string | undefined>;
  /** every chunk of stdout and stderr as it arrives */
  onOutput?: ((chunk: string) => void) | undefined;
  /** the most output kept for error reports; older output is dropped */
  tailBytes?: number;
  /** how the child is asked to stop when the signal aborts (SIGKILL follows after 5 s) */
  killSignal?: NodeJS.Signals;
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  /** the last `tailBytes` of stdout and stderr interleaved */
  tail: string;
}

const MAX_STDOUT = 4 * 1024 * 1024;

/**
 * Runs a child process with its output bounded: stdout (for JSON answers) up to 4 MiB, and a tail of
 * the combined output for error messages. The child is killed when the signal aborts; the caller then
 * gets a BuildError with code OCIAPP_BUILD_ABORTED. A missing executable rejects with the execa error
 * (code ENOENT) for the caller to explain.
 */
export async function run(file: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const tailBytes = options.tailBytes ?? 64 * 1024;
  let tail = "";
  let stdout = "";
  const child = execa(file, args, {
    cwd: options.cwd,
    env: options.env,
    extendEnv: true,
    reject: false,
    buffer: false,
    stdin: "ignore",
    encoding: "utf8",
    ...(options.signal ? { cancelSignal: options.signal } : {}),
    killSignal: options.killSignal ?? "SIGTERM",
    forceKillAfterDelay: 5_000,
  });
  const onChunk = (fromStdout: boolean) => (chunk: Buffer | string) => {
    const text = chunk.toString();
    if (fromStdout && stdout.length < MAX_STDOUT) stdout += text.slice(0, MAX_STDOUT - stdout.length);
    tail = (tail + text).slice(-tailBytes);
    options.onOutput?.(text);
  };
  child.stdout?.on("data", onChunk(true));
  child.stderr?.on("data", onChunk(false));
  const result = await child;
  if (result.isCanceled || options.signal?.aborted) {
    throw new BuildError("OCIAPP_BUILD_ABORTED", "build aborted", { cause: options.signal?.reason });
  }
  if (result.failed && result.exitCode === undefined && result.signal === undefined) {
    // Spawn failures (ENOENT, EACCES) carry no exit code.
    throw result;
  }
  return { exitCode: result.exitCode ?? 1, stdout, tail };
}

/**
 * run(), for a tool the build needs: a missing executable (ENOENT from the spawn) becomes a BuildError
 * with the given code and one-line message saying what to install.
 */
export async function runTool(
  file: string,
  args: string[],
  options: RunOptions,
  missing: { code: BuildErrorCode; message: string },
): Promise<RunResult> {
  try {
    return await run(file, args, options);
  } catch (error) {
    if ((error as { code?: unknown }).code === "ENOENT") {
      throw new BuildError(missing.code, missing.message, { cause: error });
    }
    throw error;
  }
}

export function lastLines(text: string, count: number): string {
  return text.trimEnd().split("\n").slice(-count).join("\n");
}
