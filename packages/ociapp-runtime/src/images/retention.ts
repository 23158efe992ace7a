import type { EngineImage } from "../engines/engine.js";
import { parseRuntimeName } from "./names.js";

/**
 * Which runtime-owned images one retention pass removes: a pure function of what the engine listed.
 *
 * Never removed: an image a container uses (in any state), the image of an artifact this runtime has
 * containers or calls for, and an image any runtime on the engine used within `recentMs`
 * (min(RECENT_USE_MS, idleTimeout)): their last-used records are the shared record
 * (`ociapp.invalid/used:...` tags, refreshed by every runtime while it uses the image).
 *
 * Removed: images unused for `idleTimeout`; then, while the images' total size is over `maxBytes`,
 * the least recently used others; and loading names older than STALE_LOAD_MS (a runtime died while
 * loading: its load cannot still be running). At most `maxRemovals` per pass.
 */

/** Images used this recently are kept even over the disk budget. */
export const RECENT_USE_MS = 10 * 60_000;
/** A loading name this old belongs to a load that ended without cleaning up. */
export const STALE_LOAD_MS = 60 * 60_000;
/** Images removed per pass at most: a pass is a bounded amount of engine work. */
export const MAX_REMOVALS_PER_PASS = 16;

export interface RetentionRules {
  /** ms an image may go unused before it is removed; 0: never for idleness. */
  idleTimeout: number;
  /** bytes the runtime-owned images may take (engine-reported sizes); 0: no budget. */
  maxBytes: number;
}

export interface RetentionInput extends RetentionRules {
  images: EngineImage[];
  /** Wall-clock ms since the epoch. */
  now: number;
  /** Artifacts (manifest digests) this runtime holds containers or calls for. */
  active: ReadonlySet<string>;
  maxRemovals?: number;
}

export interface Removal {
  image: EngineImage;
  /** The names to delete, in order: records and loading names first, the artifact names last. */
  names: string[];
  reason: "idle" | "budget" | "stale-load";
}

export function planRetention(input: RetentionInput): Removal[] {
  const { images, now, active, idleTimeout, maxBytes } = input;
  const maxRemovals = input.maxRemovals ?? MAX_REMOVALS_PER_PASS;
  const recentMs = idleTimeout > 0 ? Math.min(RECENT_USE_MS, idleTimeout) : RECENT_USE_MS;
  const removals: Removal[] = [];
  const removed = new Set<EngineImage>();
  const loadingAges = (image: EngineImage) =>
    image.names.flatMap((name) => {
      const parsed = parseRuntimeName(name);
      return parsed?.kind === "loading" ? [{ name, age: now - parsed.at }] : [];
    });
  const kept = (image: EngineImage): boolean =>
    image.inUse ||
    image.artifacts.some((digest) => active.has(digest)) ||
    now - image.lastUsed < recentMs ||
    loadingAges(image).some(({ age }) => age < STALE_LOAD_MS);

  const candidates: EngineImage[] = [];
  for (const image of images) {
    if (!kept(image)) {
      if (image.artifacts.length === 0) {
        // Only stale loading names: what a dead runtime's load left.
        removals.push({ image, names: ordered(image.names), reason: "stale-load" });
        removed.add(image);
      } else if (idleTimeout > 0 && now - image.lastUsed >= idleTimeout) {
        removals.push({ image, names: ordered(image.names), reason: "idle" });
        removed.add(image);
      } else {
        candidates.push(image);
      }
    } else {
      const stale = loadingAges(image).filter(({ age }) => age >= STALE_LOAD_MS);
      if (stale.length > 0 && stale.length < image.names.length) {
        removals.push({ image, names: stale.map(({ name }) => name), reason: "stale-load" });
      }
    }
  }
  if (maxBytes > 0) {
    let total = images.reduce((sum, image) => sum + (removed.has(image) ? 0 : image.size), 0);
    candidates.sort((a, b) => a.lastUsed - b.lastUsed);
    for (const image of candidates) {
      if (total <= maxBytes) break;
      removals.push({ image, names: ordered(image.names), reason: "budget" });
      total -= image.size;
    }
  }
  return removals.slice(0, maxRemovals);
}

/**
 * Records and loading names first, the artifact names last: a removal the engine refuses half-way
 * (a container appeared) leaves the image under its artifact name, still usable.
 */
function ordered(names: string[]): string[] {
  const rank = (name: string) => (parseRuntimeName(name)?.kind === "artifact" ? 1 : 0);
  return [...names].sort((a, b) => rank(a) - rank(b));
}
