import { Command, InvalidArgumentError, Option } from "commander";
import { loadApp } from "./cli/load-app.js";
import { OciappError, OciappUsageError } from "./errors.js";
import {
  DEFAULT_FRAME_TIMEOUT_MS,
  DEFAULT_MAX_DEPTH,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_MAX_VALUES,
  MAX_DECLARABLE_FRAME_BYTES,
  MIN_LIMITS,
} from "./protocol/constants.js";
import {
  DEFAULT_MAX_CONCURRENCY,
  DEFAULT_SHUTDOWN_GRACE_MS,
  DEFAULT_SOCKET_PATH,
  OciappConnectError,
  type ServerHandle,
  serve,
} from "./server/index.js";
import { VERSION } from "./version.js";

/** Exit code when connect mode cannot reach the host within the orphan timeout. */
export const EXIT_NO_HOST = 3;

interface ServeCommandOptions {
  app: string;
  socket?: string;
  connect?: string;
  maxConcurrency: number;
  maxFrameBytes: number;
  maxDepth: number;
  maxValues: number;
  frameTimeout: number;
  shutdownGrace: number;
  orphanTimeout: number;
}

function integer(min: number, max: number): (value: string) => number {
  return (value) => {
    const parsed = /^\s*\d+\s*$/.test(value) ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max) {
      throw new InvalidArgumentError(`expected an integer from ${min} to ${max}.`);
    }
    return parsed;
  };
}

function option(
  flags: string,
  description: string,
  env: string,
  parse: (value: string) => number,
  fallback: number,
) {
  return new Option(flags, description).env(env).argParser(parse).default(fallback);
}

function line(text: string): void {
  process.stderr.write(`ociapp: ${text}\n`);
}

async function runServe(options: ServeCommandOptions): Promise<void> {
  if (options.socket !== undefined && options.connect !== undefined) {
    throw new OciappUsageError(
      "OCIAPP_INVALID_OPTION",
      "--socket (listen mode) and --connect (connect mode) exclude each other, from flags or OCIAPP_SOCKET / OCIAPP_CONNECT: give one",
    );
  }
  // Signals are ours from the start: while the app loads nothing exists yet, so a signal just ends
  // the process; while serve() starts (connect mode may retry for a while) it stops it through
  // `starting`; once serving, the first drains and the second cuts the grace short.
  const starting = new AbortController();
  let loading = true;
  let handle: ServerHandle | undefined;
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (loading) {
      line(`${signal}: stopped before serving`);
      process.exit(0);
    } else if (handle === undefined) {
      starting.abort(new Error(signal));
    } else if (signals === 1) {
      const { pending } = handle.stats();
      line(`${signal}: draining ${pending} request(s), grace ${options.shutdownGrace} ms`);
      void handle.close();
    } else {
      line(`${signal} again: cancelling what is left`);
      void handle.close({ graceMs: 0 });
    }
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  const loaded = await loadApp(options.app);
  loading = false;
  // A promise the app forgot to await must not take every other request down with the process.
  // (A synchronous throw outside execute still ends it: the app's state is unknown after that.)
  process.on("unhandledRejection", (reason) => {
    line(`unhandled rejection in the app: ${reason instanceof Error ? reason.message : String(reason)}`);
  });
  try {
    handle = await serve({
      app: loaded.app,
      ...(options.connect === undefined
        ? { socketPath: options.socket ?? DEFAULT_SOCKET_PATH }
        : { connectPath: options.connect }),
      maxConcurrency: options.maxConcurrency,
      maxFrameBytes: options.maxFrameBytes,
      maxDepth: options.maxDepth,
      maxValues: options.maxValues,
      frameTimeoutMs: options.frameTimeout,
      shutdownGraceMs: options.shutdownGrace,
      orphanTimeoutMs: options.orphanTimeout,
      appInfo: {
        ...loaded.packageInfo,
        ...(loaded.app.name === undefined ? {} : { name: loaded.app.name }),
        ...(loaded.app.version === undefined ? {} : { version: loaded.app.version }),
      },
      signal: starting.signal,
    });
  } catch (error) {
    if (starting.signal.aborted) {
      line(`${(starting.signal.reason as Error).message}: stopped before serving`);
      process.exit(0);
    }
    if (error instanceof OciappConnectError) {
      line(error.message);
      process.exit(EXIT_NO_HOST);
    }
    throw error;
  }
  const where = handle.mode === "listen" ? `on ${handle.socketPath}` : `connected to ${handle.socketPath}`;
  line(`serving ${options.app} ${where} (max concurrency ${options.maxConcurrency})`);
  const reason = await handle.closed;
  line(
    reason === "orphaned"
      ? "stopped: no host within the orphan timeout"
      : reason === "disconnected"
        ? "stopped: the host closed the connection"
        : "stopped",
  );
  // Work the app left behind (timers, handles) must not keep a stopped server alive.
  process.exit(0);
}

/**
 * `ociapp check --app <module#export>`: loads the app exactly as serve does, then exits: 0 with one
 * line naming what it loaded, or 1 with serve's one-line load error (through main()). ociapp-build
 * runs it in the image it builds, so a wrong entrypoint fails the build instead of the first call.
 * It exits explicitly: whatever the app started while loading must not keep the process alive.
 */
async function runCheck(options: { app: string }): Promise<void> {
  const loaded = await loadApp(options.app);
  const name = loaded.app.constructor?.name;
  line(`${options.app}: an Application${name && name !== "Object" ? ` (${name})` : ""}, ready to serve`);
  process.exit(0);
}

export function createProgram(): Command {
  const program = new Command("ociapp")
    .description("Serve an ociapp Application over a Unix socket")
    .version(VERSION)
    // User mistakes are one line, in the same voice as the load errors.
    .configureOutput({ outputError: (text, write) => write(`ociapp: ${text.replace(/^error: /, "")}`) });
  program
    .command("serve")
    .description(
      "load an Application and answer requests on a Unix socket (listening, or connected to the host) until SIGTERM/SIGINT or, connected, until the host closes",
    )
    .addOption(
      new Option(
        "--app <module#export>",
        "module path (from the working directory) and export, default export app",
      )
        .env("OCIAPP_APP")
        .makeOptionMandatory(),
    )
    .addOption(
      new Option(
        "--socket <path>",
        `listen mode: the socket to listen on (default ${DEFAULT_SOCKET_PATH})`,
      ).env("OCIAPP_SOCKET"),
    )
    .addOption(
      new Option("--connect <path>", "connect mode: the host's socket to connect to").env("OCIAPP_CONNECT"),
    )
    .addOption(
      option(
        "--max-concurrency <n>",
        "executes in flight; the rest wait in order",
        "OCIAPP_MAX_CONCURRENCY",
        integer(1, 1_000_000),
        DEFAULT_MAX_CONCURRENCY,
      ),
    )
    .addOption(
      option(
        "--max-frame-bytes <n>",
        "largest frame body read",
        "OCIAPP_MAX_FRAME_BYTES",
        integer(MIN_LIMITS.maxFrameBytes, MAX_DECLARABLE_FRAME_BYTES),
        DEFAULT_MAX_FRAME_BYTES,
      ),
    )
    .addOption(
      option(
        "--max-depth <n>",
        "deepest nesting of a frame read",
        "OCIAPP_MAX_DEPTH",
        integer(MIN_LIMITS.maxDepth, 100_000),
        DEFAULT_MAX_DEPTH,
      ),
    )
    .addOption(
      option(
        "--max-values <n>",
        "most values in a frame read",
        "OCIAPP_MAX_VALUES",
        integer(MIN_LIMITS.maxValues, MAX_DECLARABLE_FRAME_BYTES),
        DEFAULT_MAX_VALUES,
      ),
    )
    .addOption(
      option(
        "--frame-timeout <ms>",
        "time allowed for the rest of a frame once it has begun",
        "OCIAPP_FRAME_TIMEOUT_MS",
        integer(1, 2 ** 31 - 1),
        DEFAULT_FRAME_TIMEOUT_MS,
      ),
    )
    .addOption(
      option(
        "--shutdown-grace <ms>",
        "on SIGTERM/SIGINT, time in-flight requests get before they are cancelled",
        "OCIAPP_SHUTDOWN_GRACE_MS",
        integer(0, 2 ** 31 - 1),
        DEFAULT_SHUTDOWN_GRACE_MS,
      ),
    )
    .addOption(
      option(
        "--orphan-timeout <ms>",
        "listen mode: exit 0 after this long with no host connected (0: never); connect mode: how long to try to reach the host (0: 60000)",
        "OCIAPP_ORPHAN_TIMEOUT_MS",
        integer(0, 2 ** 31 - 1),
        0,
      ),
    )
    .action(runServe);
  program
    .command("check")
    .description(
      "load an Application as serve would and exit: 0 when it is one, 1 with the reason in one line",
    )
    .addOption(
      new Option(
        "--app <module#export>",
        "module path (from the working directory) and export, default export app",
      )
        .env("OCIAPP_APP")
        .makeOptionMandatory(),
    )
    .action(runCheck);
  return program;
}

/** The `ociapp` command line. User mistakes end the process with one line on stderr and exit code 1. */
export async function main(argv: string[] = process.argv): Promise<void> {
  try {
    await createProgram().parseAsync(argv);
  } catch (error) {
    if (error instanceof OciappError) {
      line(error.message);
      process.exit(1);
    }
    throw error;
  }
}
