/** Labels on every container a Runtime creates. */
export const LABELS = {
  managed: "dev.ociapp.managed",
  runtime: "dev.ociapp.runtime",
  artifact: "dev.ociapp.artifact",
  /** "<hostname>:<pid>" of the process that owns the runtime. */
  owner: "dev.ociapp.owner",
} as const;
