import {
  DEFAULT_FRAME_TIMEOUT_MS,
  DEFAULT_MAX_DEPTH,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_MAX_VALUES,
  MAX_DECLARABLE_FRAME_BYTES,
  MIN_LIMITS,
} from "../protocol/constants.js";
import { DEFAULT_MAX_CONCURRENCY, DEFAULT_SHUTDOWN_GRACE_MS } from "../server/options.js";

/** What `ociapp serve` runs with, from its flags and their environment variables. */
export interface ServeCommandOptions {
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

type NumericKey = Exclude<keyof ServeCommandOptions, "app" | "socket" | "connect">;

/** One integer option of `ociapp serve`: the one table both the commander program and the fast path read. */
export interface NumericOption {
  key: NumericKey;
  flags: string;
  description: string;
  env: string;
  min: number;
  max: number;
  fallback: number;
}

export const NUMERIC_OPTIONS: readonly NumericOption[] = [
  {
    key: "maxConcurrency",
    flags: "--max-concurrency <n>",
    description: "executes in flight; the rest wait in order",
    env: "OCIAPP_MAX_CONCURRENCY",
    min: 1,
    max: 1_000_000,
    fallback: DEFAULT_MAX_CONCURRENCY,
  },
  {
    key: "maxFrameBytes",
    flags: "--max-frame-bytes <n>",
    description: "largest frame body read",
    env: "OCIAPP_MAX_FRAME_BYTES",
    min: MIN_LIMITS.maxFrameBytes,
    max: MAX_DECLARABLE_FRAME_BYTES,
    fallback: DEFAULT_MAX_FRAME_BYTES,
  },
  {
    key: "maxDepth",
    flags: "--max-depth <n>",
    description: "deepest nesting of a frame read",
    env: "OCIAPP_MAX_DEPTH",
    min: MIN_LIMITS.maxDepth,
    max: 100_000,
    fallback: DEFAULT_MAX_DEPTH,
  },
  {
    key: "maxValues",
    flags: "--max-values <n>",
    description: "most values in a frame read",
    env: "OCIAPP_MAX_VALUES",
    min: MIN_LIMITS.maxValues,
    max: MAX_DECLARABLE_FRAME_BYTES,
    fallback: DEFAULT_MAX_VALUES,
  },
  {
    key: "frameTimeout",
    flags: "--frame-timeout <ms>",
    description: "time allowed for the rest of a frame once it has begun",
    env: "OCIAPP_FRAME_TIMEOUT_MS",
    min: 1,
    max: 2 ** 31 - 1,
    fallback: DEFAULT_FRAME_TIMEOUT_MS,
  },
  {
    key: "shutdownGrace",
    flags: "--shutdown-grace <ms>",
    description: "on SIGTERM/SIGINT, time in-flight requests get before they are cancelled",
    env: "OCIAPP_SHUTDOWN_GRACE_MS",
    min: 0,
    max: 2 ** 31 - 1,
    fallback: DEFAULT_SHUTDOWN_GRACE_MS,
  },
  {
    key: "orphanTimeout",
    flags: "--orphan-timeout <ms>",
    description:
      "listen mode: exit 0 after this long with no host connected (0: never); connect mode: how long to try to reach the host (0: 60000)",
    env: "OCIAPP_ORPHAN_TIMEOUT_MS",
    min: 0,
    max: 2 ** 31 - 1,
    fallback: 0,
  },
];

/** The integer in `value` when it is one from min to max (surrounding spaces allowed), else undefined. */
export function parseInteger(value: string, min: number, max: number): number | undefined {
  const parsed = /^\s*\d+\s*$/.test(value) ? Number(value) : Number.NaN;
  return Number.isSafeInteger(parsed) && parsed >= min && parsed <= max ? parsed : undefined;
}

/**
 * `ociapp serve`'s options without commander, for the way the managed image and the runtime start it:
 * `serve --app <spec>` (or `--app=<spec>`, or only OCIAPP_APP) with every other setting from the
 * environment. Undefined for anything else (another flag, --help, a value commander would refuse):
 * commander then parses, so every message and default stays commander's. Loading commander and
 * building the program costs a container's cold start about 5-10 ms (bench/README: Performance).
 */
export function fastServeOptions(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): ServeCommandOptions | undefined {
  let app: string | undefined;
  if (args.length === 2 && args[0] === "--app") app = args[1];
  else if (args.length === 1 && args[0]?.startsWith("--app=")) app = args[0].slice("--app=".length);
  else if (args.length === 0) app = env.OCIAPP_APP;
  else return undefined;
  if (app === undefined || app === "" || app.startsWith("-")) return undefined;
  const options: ServeCommandOptions = { app, ...defaults() };
  for (const option of NUMERIC_OPTIONS) {
    const raw = env[option.env];
    if (raw === undefined) continue;
    const value = parseInteger(raw, option.min, option.max);
    if (value === undefined) return undefined;
    options[option.key] = value;
  }
  if (env.OCIAPP_SOCKET !== undefined) options.socket = env.OCIAPP_SOCKET;
  if (env.OCIAPP_CONNECT !== undefined) options.connect = env.OCIAPP_CONNECT;
  return options;
}

function defaults(): Record<NumericKey, number> {
  return Object.fromEntries(NUMERIC_OPTIONS.map((option) => [option.key, option.fallback])) as Record<
    NumericKey,
    number
  >;
}
