import type { ContainerExit, ContainerHandle } from "../engines/engine.js";
import type { OutputPipeline } from "../engines/output.js";
import { InstanceStartupError, OciappRuntimeError, RuntimeClosedError } from "../errors.js";
import type { ResolvedOptions } from "../options.js";
import { within } from "../util/timers.js";
import { exitText, UNKNOWN_EXIT } from "./exit-report.js";
import { StartupAbort, type StartupStop } from "./startup.js";

export interface StartupContext {
  digest: string;
  options: ResolvedOptions;
  /** The start's own signal: aborted "closed" by close(), "timeout" at startupTimeout. */
  signal: AbortSignal;
  /** The container, when it was created. */
  handle: ContainerHandle | undefined;
  output: OutputPipeline;
}

/**
 * What a failed start tells its callers: RuntimeClosedError after close(); the engine's or the
 * artifact's own error when no container was made; otherwise InstanceStartupError with the exit report
 * (waited for up to exitReportTimeout when the container hung up before its hello) and its last output.
 */
export async function describeStartupFailure(
  error: unknown,
  context: StartupContext,
): Promise<OciappRuntimeError> {
  const { digest, options, signal, handle } = context;
  if (signal.aborted && signal.reason === "closed") return new RuntimeClosedError();
  // The image could not be loaded, or the engine is unreachable: the caller gets that error as is.
  if (error instanceof OciappRuntimeError && !handle) return error;
  const stop: StartupStop | undefined = error instanceof StartupAbort ? error.stop : undefined;
  let exit: ContainerExit = UNKNOWN_EXIT;
  if (stop?.kind === "exit") exit = stop.exit;
  else if (stop?.kind === "closed" && handle) {
    // A container that hung up before its hello has usually exited: wait for the engine's report.
    const report = await within(handle.exit, options.exitReportTimeout);
    if (report !== "timeout") exit = report;
  }
  const name = handle ? `container ${handle.id.slice(0, 12)}` : "the container";
  let message: string;
  if (signal.aborted && signal.reason === "timeout") {
    message = `${name} for ${digest} did not send its hello frame within ${options.startupTimeout} ms`;
  } else if (stop?.kind === "exit" || (stop?.kind === "closed" && exit !== UNKNOWN_EXIT)) {
    message = `${name} for ${digest} ${exitText(exit)} before it was ready`;
  } else if (stop?.kind === "protocol") {
    message = `${name} for ${digest} broke the protocol while starting: ${stop.message}`;
  } else if (stop?.kind === "closed") {
    message = `${name} for ${digest} closed its connection before sending hello`;
  } else {
    message = `${name} for ${digest} could not be started: ${(error as Error)?.message ?? String(error)}`;
  }
  return new InstanceStartupError(digest, message, context.output.text(), exit, { cause: error });
}
