import { OptionsError } from "../errors.js";
import { boolean, integer, show, stringRecord } from "./validate.js";

/** The engine refuses memory limits below 6 MiB. */
const MIN_MEMORY_BYTES = 6 * 1024 * 1024;

/** How each container is confined. Every field has a secure default; override per Runtime. */
export interface ContainerOptions {
  /** Numeric "uid:gid" the app runs as. Default "10001:10001". */
  user?: string;
  /** Engine network mode. Default "none": the app cannot reach any network. */
  networkMode?: string;
  /** Mount the image's root filesystem read-only. Default true. */
  readonlyRootfs?: boolean;
  /** tmpfs mounts (path → mount options). Default {"/tmp": "rw,nosuid,nodev,size=64m"}. */
  tmpfs?: Record<string, string>;
  /** Linux capabilities dropped. Default ["ALL"]. */
  capDrop?: string[];
  /** Set no-new-privileges. Default true. */
  noNewPrivileges?: boolean;
  /** Run the engine's init as PID 1 (reaps zombies, forwards signals). Default true. */
  init?: boolean;
  /** Memory limit in bytes, swap set equal (so none); 0 for no limit. Default 512 MiB. */
  memory?: number;
  /** CPU limit in billionths of a CPU; 0 for no limit. Default 1e9 (one CPU). */
  nanoCpus?: number;
  /** Most processes/threads in the container; 0 for no limit. Default 256. */
  pidsLimit?: number;
  /** Largest json-file log kept by the engine per container (one file), e.g. "1m". Default "1m". */
  logMaxSize?: string;
  /** Allow `user` to be root (uid 0). Default false. */
  allowRoot?: boolean;
  /**
   * The OCI runtime the engine runs the container with, by the name the engine registered it under:
   * "runc" (default) or "runsc" (gVisor: a user-space kernel between the app and the host's; see the
   * README's sandbox section for what it costs). Whether the engine has it is checked at the first
   * engine contact. runsc requires networkMode "none".
   */
  runtime?: string;
}

export interface ResolvedContainerOptions {
  user: string;
  uid: number;
  gid: number;
  networkMode: string;
  readonlyRootfs: boolean;
  tmpfs: Record<string, string>;
  capDrop: string[];
  noNewPrivileges: boolean;
  init: boolean;
  memory: number;
  nanoCpus: number;
  pidsLimit: number;
  logMaxSize: string;
  allowRoot: boolean;
  runtime: string;
}

export function resolveContainer(value: unknown): ResolvedContainerOptions {
  if (value !== undefined && (typeof value !== "object" || value === null || Array.isArray(value))) {
    throw new OptionsError(`Runtime option container must be an object (got ${show(value)})`);
  }
  const options = (value ?? {}) as ContainerOptions;
  const known = new Set([
    "user",
    "networkMode",
    "readonlyRootfs",
    "tmpfs",
    "capDrop",
    "noNewPrivileges",
    "init",
    "memory",
    "nanoCpus",
    "pidsLimit",
    "logMaxSize",
    "allowRoot",
    "runtime",
  ]);
  for (const key of Object.keys(options)) {
    if (!known.has(key)) throw new OptionsError(`Runtime option container.${key} is not a known option`);
  }
  const user = options.user ?? "10001:10001";
  const match = typeof user === "string" ? /^(\d+):(\d+)$/.exec(user) : null;
  if (!match) {
    throw new OptionsError(`Runtime option container.user must be numeric "uid:gid" (got ${show(user)})`);
  }
  const uid = Number(match[1]);
  const gid = Number(match[2]);
  const allowRoot = boolean("container.allowRoot", options.allowRoot, false);
  if (uid === 0 && !allowRoot) {
    throw new OptionsError(
      `Runtime option container.user must not be root unless container.allowRoot is true (got ${show(user)})`,
    );
  }
  const memory = integer("Runtime", "container.memory", options.memory, 512 * 1024 * 1024, 0);
  if (memory !== 0 && memory < MIN_MEMORY_BYTES) {
    throw new OptionsError(
      `Runtime option container.memory must be 0 (no limit) or at least ${MIN_MEMORY_BYTES} bytes (got ${memory})`,
    );
  }
  const logMaxSize = options.logMaxSize ?? "1m";
  if (typeof logMaxSize !== "string" || !/^\d+[kmg]?$/.test(logMaxSize)) {
    throw new OptionsError(
      `Runtime option container.logMaxSize must be a size such as "512k" or "1m" (got ${show(logMaxSize)})`,
    );
  }
  const networkMode = options.networkMode ?? "none";
  if (typeof networkMode !== "string" || networkMode === "") {
    throw new OptionsError(
      `Runtime option container.networkMode must be a string (got ${show(networkMode)})`,
    );
  }
  const runtime = options.runtime ?? "runc";
  if (typeof runtime !== "string" || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(runtime)) {
    throw new OptionsError(
      `Runtime option container.runtime must be an OCI runtime name such as "runc" or "runsc" (got ${show(runtime)})`,
    );
  }
  // gVisor's own network stack is off (--network=none): any other mode would silently give the app
  // only a loopback device, so it is refused rather than pretended.
  if (runtime === "runsc" && networkMode !== "none") {
    throw new OptionsError(
      `Runtime option container.networkMode must be "none" with container.runtime "runsc" (got ${show(networkMode)})`,
    );
  }
  const capDrop = options.capDrop ?? ["ALL"];
  if (!Array.isArray(capDrop) || capDrop.some((cap) => typeof cap !== "string")) {
    throw new OptionsError(
      `Runtime option container.capDrop must be an array of strings (got ${show(capDrop)})`,
    );
  }
  return {
    user,
    uid,
    gid,
    networkMode,
    readonlyRootfs: boolean("container.readonlyRootfs", options.readonlyRootfs, true),
    tmpfs:
      options.tmpfs === undefined
        ? { "/tmp": "rw,nosuid,nodev,size=64m" }
        : stringRecord("container.tmpfs", options.tmpfs),
    capDrop: [...capDrop],
    noNewPrivileges: boolean("container.noNewPrivileges", options.noNewPrivileges, true),
    init: boolean("container.init", options.init, true),
    memory,
    nanoCpus: integer("Runtime", "container.nanoCpus", options.nanoCpus, 1_000_000_000, 0),
    pidsLimit: integer("Runtime", "container.pidsLimit", options.pidsLimit, 256, 0),
    logMaxSize,
    allowRoot,
    runtime,
  };
}
