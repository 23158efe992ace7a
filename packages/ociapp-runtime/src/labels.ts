/** Labels on every container a Runtime creates. */
export const LABELS = {
  managed: "dev.ociapp.managed",
  runtime: "dev.ociapp.runtime",
  artifact: "dev.ociapp.artifact",
  /**
   * "<boot id>/<pid namespace>/<pid>/<start time>" of the process that owns the runtime (see
   * host/owner.ts): unique across hosts, boots, PID namespaces and pid reuse.
   */
  owner: "dev.ociapp.owner",
} as const;
