/**
 * Settings an app may declare about how it should run (package.json `"ociapp": { "runtime": {...} }`),
 * recorded by ociapp-build as manifest annotations in ociapp's own namespace (`dev.ociapp.runtime.*`;
 * not image labels, which a container inherits). A runtime uses them only to **lower** what the
 * service allows (the smaller of the two wins), never to raise a limit or to add environment: the
 * artifact's author does not decide what the host gives it.
 */
export interface RuntimeDefaults {
  /** Requests in flight per container. */
  maxConcurrency?: number;
  /** Containers of the artifact at once. */
  maxInstances?: number;
  /** Containers kept warm. */
  minInstances?: number;
  /** Memory limit per container, in bytes. */
  memory?: number;
  /** CPU limit per container, in billionths of a CPU. */
  nanoCpus?: number;
}

/** Each default's annotation, and the range a value must be in. */
export const RUNTIME_DEFAULTS: Record<
  keyof RuntimeDefaults,
  { annotation: string; min: number; max: number }
> = {
  maxConcurrency: { annotation: "dev.ociapp.runtime.maxConcurrency", min: 1, max: 65_536 },
  maxInstances: { annotation: "dev.ociapp.runtime.maxInstances", min: 1, max: 1_024 },
  minInstances: { annotation: "dev.ociapp.runtime.minInstances", min: 0, max: 1_024 },
  memory: { annotation: "dev.ociapp.runtime.memory", min: 6 * 1024 * 1024, max: 2 ** 50 },
  nanoCpus: { annotation: "dev.ociapp.runtime.nanoCpus", min: 1_000_000, max: 1_024 * 1_000_000_000 },
};

/** The annotations that record `defaults` (ociapp-build). */
export function runtimeDefaultsAnnotations(defaults: RuntimeDefaults): Record<string, string> {
  const annotations: Record<string, string> = {};
  for (const [key, spec] of Object.entries(RUNTIME_DEFAULTS) as [
    keyof RuntimeDefaults,
    (typeof RUNTIME_DEFAULTS)[keyof RuntimeDefaults],
  ][]) {
    const value = defaults[key];
    if (value !== undefined) annotations[spec.annotation] = String(value);
  }
  return annotations;
}

/**
 * The defaults an artifact's manifest annotations declare (a runtime). Lenient by design: a value
 * that is not a decimal integer in its range is ignored, since the defaults can only lower limits and
 * an artifact gains nothing by a malformed one.
 */
export function readRuntimeDefaults(annotations: Record<string, string>): RuntimeDefaults {
  const defaults: RuntimeDefaults = {};
  for (const [key, spec] of Object.entries(RUNTIME_DEFAULTS) as [
    keyof RuntimeDefaults,
    (typeof RUNTIME_DEFAULTS)[keyof RuntimeDefaults],
  ][]) {
    const text = annotations[spec.annotation];
    if (text === undefined || !/^\d{1,16}$/.test(text)) continue;
    const value = Number(text);
    if (Number.isSafeInteger(value) && value >= spec.min && value <= spec.max) defaults[key] = value;
  }
  return defaults;
}
