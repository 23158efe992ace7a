/** Bounds applied to every artifact read; an artifact past any of them is rejected, never buffered. */
export const ARTIFACT_LIMITS = {
  /** index.json, a nested index or a manifest: far larger than any real one. */
  maxJsonBytes: 4 * 1024 * 1024,
  /** tar entries walked before giving up (a real image layout has a few dozen). */
  maxEntries: 65_536,
  /** a PAX extended header or a GNU long name body. */
  maxExtendedHeaderBytes: 64 * 1024,
  /** descriptors in one index or layers in one manifest. */
  maxDescriptors: 4_096,
  /** nested indexes followed from index.json to an image manifest. */
  maxIndexDepth: 4,
} as const;
