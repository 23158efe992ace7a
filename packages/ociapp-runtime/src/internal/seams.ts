import type { ReadArtifactIndex } from "../artifacts/artifact-cache.js";

/**
 * The key under which createRuntime() hands its seams to the constructor. A symbol: invisible to
 * option validation (which lists string keys) and unreachable from the public API.
 */
export const INTERNALS: unique symbol = Symbol("ociapp-runtime internals");

export interface Seams {
  readIndex?: ReadArtifactIndex;
  now?: () => number;
}

export function seamsOf(options: object): Seams {
  return (options as { [INTERNALS]?: Seams })[INTERNALS] ?? {};
}
