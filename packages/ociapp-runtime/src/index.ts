export { DockerEngine } from "./docker-engine.js";
export type { ContainerExit, ContainerHandle, ContainerSpec, Engine, ListedContainer } from "./engine.js";
export {
  ArtifactError,
  EngineUnavailableError,
  InstanceStartupError,
  InvalidRequestError,
  type KnownRuntimeError,
  OciappRuntimeError,
  OptionsError,
  ProtocolError,
  type ProtocolErrorReason,
  QueueFullError,
  RemoteExecutionError,
  RequestTimeoutError,
  RuntimeClosedError,
  type RuntimeErrorCode,
  WorkerExitedError,
} from "./errors.js";
export type { InstanceState } from "./instance.js";
export type { CallOptions, ContainerOptions, RuntimeOptions } from "./options.js";
export type { ArtifactStats } from "./pool.js";
export type { RuntimeStats } from "./runtime.js";
export { LABELS, Runtime } from "./runtime.js";
