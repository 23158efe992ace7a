/**
 * The agent (`ociapp-runtime serve`) as a library: start one in a process of your own, or read and
 * validate its configuration. `import { Agent } from "ociapp-runtime/agent"`.
 */
export { Agent, type AgentOptions, runtimeOptions } from "./agent.js";
export { hashToken } from "./auth.js";
export {
  type AgentConfig,
  AgentConfigError,
  AgentConfigSchema,
  CLIENT_SETTINGS,
  type ClientSetting,
  loadAgentConfig,
  parseAgentConfig,
  type RegistryConfig,
  type TokenConfig,
} from "./config.js";
export type { ArtifactPuller } from "./handlers.js";
export type { AuditRecord, AuditSink } from "./metrics.js";
