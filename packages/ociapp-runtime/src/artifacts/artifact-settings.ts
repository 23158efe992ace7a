import type { RuntimeDefaults } from "ociapp/artifact";
import { OptionsError } from "../errors.js";
import { integer, show, stringRecord } from "../options/validate.js";
import type { ResolvedOptions } from "../options.js";

/**
 * Settings for one artifact that override the Runtime's (`artifacts` option). Keyed by the
 * artifact's manifest digest (`"sha256:<hex>"`: whatever path it is run from), or by an **alias** the
 * service chooses, bound here to a `path` or a `digest`: `execute("thumbnails", ...)` then runs that
 * artifact with these settings, in a pool of its own. Never keyed by a name the artifact declares
 * about itself. The app's own defaults (package.json `"ociapp": { "runtime": {...} }`, recorded as
 * manifest annotations) can only lower these.
 */
export interface ArtifactSettings {
  /** For an alias: the artifact file it names. */
  path?: string;
  /** For an alias: the manifest digest it names (an artifact this runtime has run from a path). */
  digest?: string;
  maxInstances?: number;
  maxConcurrency?: number;
  minInstances?: number;
  /** Environment added over the Runtime's `env` (the runtime's `OCIAPP_*` variables excepted). */
  env?: Record<string, string>;
  /** Memory limit per container in bytes (0: no limit). */
  memory?: number;
  /** CPU limit per container in billionths of a CPU (0: no limit). */
  nanoCpus?: number;
}

export interface ResolvedArtifactSettings {
  /** Set for an alias: what it names. */
  target: { path: string } | { digest: string } | undefined;
  maxInstances: number | undefined;
  maxConcurrency: number | undefined;
  minInstances: number | undefined;
  env: Record<string, string>;
  memory: number | undefined;
  nanoCpus: number | undefined;
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;
const ALIAS = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const KEYS = new Set([
  "path",
  "digest",
  "maxInstances",
  "maxConcurrency",
  "minInstances",
  "env",
  "memory",
  "nanoCpus",
]);

/** Validates the `artifacts` option; every message names `artifacts.<key>.<field>` and the value. */
export function resolveArtifactSettings(
  value: unknown,
  reservedEnv: readonly string[],
): Map<string, ResolvedArtifactSettings> {
  const resolved = new Map<string, ResolvedArtifactSettings>();
  if (value === undefined) return resolved;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new OptionsError(
      `Runtime option artifacts must be an object of settings by digest or alias (got ${show(value)})`,
    );
  }
  for (const [key, entry] of Object.entries(value)) {
    const where = `artifacts.${key}`;
    const isDigestKey = DIGEST.test(key);
    if (!isDigestKey && !ALIAS.test(key)) {
      throw new OptionsError(
        `Runtime option artifacts has key ${show(key)}: keys are manifest digests ("sha256:<64 hex>") or aliases (letters, digits, ".", "_", "-"; at most 128)`,
      );
    }
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      throw new OptionsError(`Runtime option ${where} must be an object (got ${show(entry)})`);
    }
    const settings = entry as ArtifactSettings;
    for (const field of Object.keys(settings)) {
      if (!KEYS.has(field)) throw new OptionsError(`Runtime option ${where}.${field} is not a known setting`);
    }
    let target: ResolvedArtifactSettings["target"];
    if (isDigestKey) {
      if (settings.path !== undefined || settings.digest !== undefined) {
        throw new OptionsError(`Runtime option ${where} is keyed by its digest: it takes no path or digest`);
      }
    } else if ((settings.path === undefined) === (settings.digest === undefined)) {
      throw new OptionsError(`Runtime option ${where} (an alias) must name exactly one of path or digest`);
    } else if (settings.path !== undefined) {
      if (typeof settings.path !== "string" || settings.path === "") {
        throw new OptionsError(
          `Runtime option ${where}.path must be a file path (got ${show(settings.path)})`,
        );
      }
      target = { path: settings.path };
    } else {
      if (typeof settings.digest !== "string" || !DIGEST.test(settings.digest)) {
        throw new OptionsError(
          `Runtime option ${where}.digest must be "sha256:<64 hex>" (got ${show(settings.digest)})`,
        );
      }
      target = { digest: settings.digest };
    }
    const scope = "Runtime";
    const optional = (name: keyof ArtifactSettings, min: number, max?: number) =>
      settings[name] === undefined
        ? undefined
        : integer(scope, `${where}.${name}`, settings[name], 0, min, max ?? Number.MAX_SAFE_INTEGER);
    const env = stringRecord(`${where}.env`, settings.env);
    for (const name of Object.keys(env)) {
      if (reservedEnv.includes(name)) {
        throw new OptionsError(
          `Runtime option ${where}.env.${name} is set by the runtime itself and cannot be overridden`,
        );
      }
    }
    resolved.set(key, {
      target,
      maxInstances: optional("maxInstances", 1, 1024),
      maxConcurrency: optional("maxConcurrency", 1, 65_536),
      minInstances: optional("minInstances", 0, 1024),
      env,
      memory: optional("memory", 0),
      nanoCpus: optional("nanoCpus", 0),
    });
  }
  return resolved;
}

/** The smaller limit, where 0 means no limit. */
function lowerLimit(service: number, app: number | undefined): number {
  if (app === undefined) return service;
  return service === 0 ? app : Math.min(service, app);
}

/**
 * The options one pool runs with: the Runtime's, then the service's settings for the artifact's
 * digest, then for the alias it was called by; then the app's declared defaults, which only lower
 * (never raise a limit, never add environment).
 */
export function effectiveOptions(
  base: ResolvedOptions,
  layers: (ResolvedArtifactSettings | undefined)[],
  app: RuntimeDefaults,
): ResolvedOptions {
  let { maxInstances, maxConcurrency, minInstances } = base;
  let { memory, nanoCpus } = base.container;
  let env = base.env;
  for (const layer of layers) {
    if (!layer) continue;
    maxInstances = layer.maxInstances ?? maxInstances;
    maxConcurrency = layer.maxConcurrency ?? maxConcurrency;
    minInstances = layer.minInstances ?? minInstances;
    memory = layer.memory ?? memory;
    nanoCpus = layer.nanoCpus ?? nanoCpus;
    env = { ...env, ...layer.env };
  }
  maxInstances = Math.min(maxInstances, app.maxInstances ?? maxInstances);
  maxConcurrency = Math.min(maxConcurrency, app.maxConcurrency ?? maxConcurrency);
  minInstances = Math.min(minInstances, app.minInstances ?? minInstances, maxInstances);
  memory = lowerLimit(memory, app.memory);
  nanoCpus = lowerLimit(nanoCpus, app.nanoCpus);
  if (
    maxInstances === base.maxInstances &&
    maxConcurrency === base.maxConcurrency &&
    minInstances === base.minInstances &&
    memory === base.container.memory &&
    nanoCpus === base.container.nanoCpus &&
    env === base.env
  ) {
    return base;
  }
  return {
    ...base,
    maxInstances,
    maxConcurrency,
    minInstances,
    env,
    container: { ...base.container, memory, nanoCpus },
  };
}
