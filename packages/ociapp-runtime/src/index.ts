export type { ArtifactCacheOptions, FileIdentity, ReadArtifactIndex } from "./artifact-cache.js";
export { DockerEngine } from "./docker-engine.js";
export type { ContainerExit, ContainerHandle, ContainerSpec, Engine, ListedContainer } from "./engine.js";
export {
  ArtifactError,
  EngineUnavailableError,
  InstanceStartupError,
  InvalidRequestError,
  OciappRuntimeError,
  OptionsError,
  ProtocolError,
  QueueFullError,
  RemoteExecutionError,
  RequestTimeoutError,
  RuntimeClosedError,
  WorkerExitedError,
} from "./errors.js";
export type { InstanceState } from "./instance.js";
export type { CallOptions, ContainerOptions, RuntimeOptions } from "./options.js";
export type { ArtifactStats } from "./pool.js";
export type { RuntimeStats } from "./runtime.js";
export { LABELS, Runtime } from "./runtime.js";
