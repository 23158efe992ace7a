import { Command, InvalidArgumentError, Option } from "commander";
import { loadApp } from "./cli/load-app.js";
import { OciappError } from "./errors.js";
import { DEFAULT_FRAME_TIMEOUT_MS, DEFAULT_MAX_FRAME_BYTES } from "./protocol/constants.js";
import {
  DEFAULT_MAX_CONCURRENCY,
  DEFAULT_SHUTDOWN_GRACE_MS,
  DEFAULT_SOCKET_PATH,
  MIN_MAX_FRAME_BYTES,
  serve,
} from "./server/index.js";
import { VERSION } from "./version.js";

interface ServeCommandOptions {
  app: string;
  socket: string;
  maxConcurrency: number;
  maxFrameBytes: number;
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
  const loaded = await loadApp(options.app);
  const handle = await serve({
    app: loaded.app,
    socketPath: options.socket,
    maxConcurrency: options.maxConcurrency,
    maxFrameBytes: options.maxFrameBytes,
    frameTimeoutMs: options.frameTimeout,
    shutdownGraceMs: options.shutdownGrace,
    orphanTimeoutMs: options.orphanTimeout,
    appInfo: {
      ...loaded.packageInfo,
      ...(loaded.app.name === undefined ? {} : { name: loaded.app.name }),
      ...(loaded.app.version === undefined ? {} : { version: loaded.app.version }),
    },
  });
  line(`serving ${options.app} on ${handle.socketPath} (max concurrency ${options.maxConcurrency})`);

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals === 1) {
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
  // A promise the app forgot to await must not take every other request down with the process.
  // (A synchronous throw outside execute still ends it: the app's state is unknown after that.)
  process.on("unhandledRejection", (reason) => {
    line(`unhandled rejection in the app: ${reason instanceof Error ? reason.message : String(reason)}`);
  });
  const reason = await handle.closed;
  line(reason === "orphaned" ? "stopped: no client within the orphan timeout" : "stopped");
  // Work the app left behind (timers, handles) must not keep a stopped server alive.
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
    .description("load an Application and answer requests on a Unix socket until SIGTERM/SIGINT")
    .addOption(
      new Option(
        "--app <module#export>",
        "module path (from the working directory) and export, default export app",
      )
        .env("OCIAPP_APP")
        .makeOptionMandatory(),
    )
    .addOption(new Option("--socket <path>", "socket path").env("OCIAPP_SOCKET").default(DEFAULT_SOCKET_PATH))
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
        "largest frame body read or written",
        "OCIAPP_MAX_FRAME_BYTES",
        integer(MIN_MAX_FRAME_BYTES, 0xffff_ffff),
        DEFAULT_MAX_FRAME_BYTES,
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
        "exit 0 after this long with no client connected (0: never)",
        "OCIAPP_ORPHAN_TIMEOUT_MS",
        integer(0, 2 ** 31 - 1),
        0,
      ),
    )
    .action(runServe);
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
