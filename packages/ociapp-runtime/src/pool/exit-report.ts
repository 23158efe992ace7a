import type { ContainerExit } from "../engines/engine.js";

/** "was OOM-killed (exit code 137)", "exited with code 3", "ended (exit code unknown)". */
export function exitText(exit: ContainerExit): string {
  if (exit.oomKilled) return `was OOM-killed (exit code ${exit.exitCode ?? "unknown"})`;
  return exit.exitCode === null ? "ended (exit code unknown)" : `exited with code ${exit.exitCode}`;
}

/** What callers learn when the engine gave no report within exitReportTimeout. */
export const UNKNOWN_EXIT: ContainerExit = Object.freeze({ exitCode: null, oomKilled: false });
