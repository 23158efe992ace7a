import type { ImageRetentionStats } from "./images/retention-runner.js";
import type { LogStats } from "./observability/logs.js";
import type { ArtifactStats } from "./pool/pool.js";

/** What Runtime.stats() returns: a snapshot, taken at the call. */
export interface RuntimeStats {
  /** The runtime's id: the value of every container's dev.ociapp.runtime label. */
  runtimeId: string;
  closed: boolean;
  /** Log records handed to the sink, dropped (queue full, sink behind) and sink errors; all 0 without a sink. */
  logs: LogStats;
  /** Bytes of partly received frames held now and at most, over all containers (see maxBufferedBytes). */
  receiveBuffer: { bytes: number; peakBytes: number; limit: number; pausedConnections: number };
  artifacts: ArtifactStats[];
  /** Image retention: passes run, images removed, the last pass's error (retention is best effort). */
  images: ImageRetentionStats;
}
