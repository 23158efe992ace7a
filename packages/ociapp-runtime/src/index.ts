export { DockerEngine } from "./engines/docker/docker-engine.js";
export type { EngineFlavour, ImageStore } from "./engines/docker/flavour.js";
export type {
  ContainerExit,
  ContainerHandle,
  ContainerSpec,
  Engine,
  EngineImage,
  ListedContainer,
  LoadImageOptions,
} from "./engines/engine.js";
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
export type { ImageRetentionStats } from "./images/retention-runner.js";
export {
  type ArtifactRef,
  type CallCreatedMessage,
  type CallQueuedMessage,
  type CallSentMessage,
  type CallSettledMessage,
  type ContainerMessage,
  channels,
  type ImageLoadMessage,
  type LogLineMessage,
} from "./observability/channels.js";
export {
  type LogLevel,
  type LogRecord,
  type LogSink,
  type LogStats,
  stderrLogs,
} from "./observability/logs.js";
export type { CallOptions, ContainerOptions, ImageOptions, RuntimeOptions } from "./options.js";
export type { ContainerStats, InstanceState } from "./pool/instance.js";
export type { LatencyStats } from "./pool/latency.js";
export type { ArtifactStats } from "./pool/pool.js";
export type { RuntimeStats } from "./runtime.js";
export { LABELS, Runtime } from "./runtime.js";
