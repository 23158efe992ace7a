import { AsyncLocalStorage } from "node:async_hooks";
import { format } from "node:util";
import type { LogLevel } from "../protocol/messages.js";

/** What the patched console hands a line written during an execute. */
export interface LogTarget {
  /** false when the line is not taken (the request has its answer, the host did not ask): print it. */
  writeLog(level: LogLevel, text: string): boolean;
}

const METHODS = [
  ["log", "info"],
  ["info", "info"],
  ["warn", "warn"],
  ["error", "error"],
  ["debug", "debug"],
] as const;

let storage: AsyncLocalStorage<LogTarget> | undefined;

/**
 * The storage that tells the patched console which request is running, created (and the console
 * patched) on first use: only once a host has asked for log records. Until then nothing is patched
 * and no AsyncLocalStorage exists, so the warm path pays for neither (on Node 20 a storage that has
 * run once installs promise hooks, which every promise of the process then pays for).
 *
 * Patched: console.log/info/warn/error/debug. A call made inside execute of a request whose host asked
 * for log records becomes that request's log frame (util.format of the arguments, as console does);
 * any other call (outside execute, or from a connection that did not ask) goes to the original method.
 */
export function logRecordStorage(): AsyncLocalStorage<LogTarget> {
  if (storage !== undefined) return storage;
  const created = new AsyncLocalStorage<LogTarget>();
  for (const [method, level] of METHODS) {
    const original = console[method];
    console[method] = function patched(this: unknown, ...args: unknown[]): void {
      const target = created.getStore();
      if (target?.writeLog(level, format(...args))) return;
      original.apply(this, args);
    };
  }
  storage = created;
  return created;
}
