import { OptionsError } from "../errors.js";
import { integer, show } from "../options/validate.js";

/**
 * Retention of the images this runtime and others on the same engine loaded (the runtime-owned
 * `ociapp.invalid/...` names, never another image). Passes run from the reaper.
 */
export interface ImageOptions {
  /**
   * Milliseconds an image may go unused by every runtime on the engine (no container of it, no
   * runtime's last-used record newer) before the reaper removes it; 0: never for idleness.
   * Default 86 400 000 (24 h).
   */
  idleTimeout?: number;
  /**
   * Bytes the runtime-owned images may take, as the engine reports their sizes (a layer shared by
   * several images counted in each); past it the least recently used are removed, except images in
   * use or used in the last 10 minutes (or idleTimeout when shorter). 0: no budget. Default 0.
   */
  maxBytes?: number;
  /**
   * Milliseconds between retention passes at least; each pass also refreshes the last-used record of
   * the images this runtime used since the previous one. Default 60 000.
   */
  interval?: number;
}

export const DEFAULT_MAX_UNPACKED_BYTES = 4 * 1024 ** 3;
/** Smallest unpacked-size budget: below it no real artifact (a Node base image) loads. */
export const MIN_UNPACKED_BYTES = 1024 * 1024;
export const MAX_BYTES_LIMIT = 2 ** 50;

export function resolveImages(value: unknown): Required<ImageOptions> {
  if (value !== undefined && (typeof value !== "object" || value === null || Array.isArray(value))) {
    throw new OptionsError(`Runtime option images must be an object (got ${show(value)})`);
  }
  const options = (value ?? {}) as ImageOptions;
  for (const key of Object.keys(options)) {
    if (!["idleTimeout", "maxBytes", "interval"].includes(key)) {
      throw new OptionsError(`Runtime option images.${key} is not a known option`);
    }
  }
  const scope = "Runtime";
  return {
    idleTimeout: integer(scope, "images.idleTimeout", options.idleTimeout, 86_400_000, 0),
    maxBytes: integer(scope, "images.maxBytes", options.maxBytes, 0, 0, MAX_BYTES_LIMIT),
    interval: integer(scope, "images.interval", options.interval, 60_000, 10),
  };
}
