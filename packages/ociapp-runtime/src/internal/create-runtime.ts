import type { ReadArtifactIndex } from "../artifacts/artifact-cache.js";
import type { RuntimeOptions } from "../options.js";
import { Runtime } from "../runtime.js";
import { INTERNALS } from "./seams.js";

/** Seams for tests of pure logic; not part of the package's exports. */
export interface RuntimeInternals {
  /** Reads an artifact's digest (the default reads the tarball's index.json). */
  readIndex?: ReadArtifactIndex;
  /** The runtime's clock, in milliseconds. */
  now?: () => number;
}

/**
 * `new Runtime(options)` with test seams. The package's exports map does not reach this module, so
 * `new Runtime(options)` stays the only public constructor.
 */
export function createRuntime(options: RuntimeOptions, internals: RuntimeInternals): Runtime {
  return new Runtime({ ...options, [INTERNALS]: internals } as RuntimeOptions);
}
