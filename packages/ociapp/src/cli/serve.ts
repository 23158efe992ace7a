import { OciappUsageError } from "../errors.js";
import { DEFAULT_SOCKET_PATH, OciappConnectError, type ServerHandle, serve } from "../server/index.js";
import type { BundledApp } from "./bundled-app.js";
import { loadApp } from "./load-app.js";
import type { ServeCommandOptions } from "./options.js";

/** Exit code when connect mode cannot reach the host within the orphan timeout. */
export const EXIT_NO_HOST = 3;

/** One line on stderr, in the CLI's voice. */
export function line(text: string): void {
  process.stderr.write(`ociapp: ${text}\n`);
}

/**
 * `ociapp serve`: loads the app (from `bundledApp` when `--app` names its module), serves until a
 * signal, the host closing, or the orphan timeout.
 */
export async function runServe(options: ServeCommandOptions, bundledApp?: BundledApp): Promise<void> {
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
  const loaded = await loadApp(options.app, process.cwd(), bundledApp);
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
export async function runCheck(options: { app: string }, bundledApp?: BundledApp): Promise<void> {
  const loaded = await loadApp(options.app, process.cwd(), bundledApp);
  const name = loaded.app.constructor?.name;
  line(`${options.app}: an Application${name && name !== "Object" ? ` (${name})` : ""}, ready to serve`);
  process.exit(0);
}
