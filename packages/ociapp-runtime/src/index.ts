export type { ArtifactSettings } from "./artifacts/artifact-settings.js";
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
export {
  type ArtifactName,
  DIGEST_PATTERN,
  type DrainOptions,
  type ExecuteOptions,
  type Executor,
  type ExecutorStats,
  isDigest,
  type WarmOptions,
} from "./executor.js";
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
export type { AgentStats } from "./remote/client/directory.js";
export { RemoteExecutor, type RemoteExecutorOptions } from "./remote/client/remote-executor.js";
export {
  AgentError,
  AgentUnavailableError,
  CallLostError,
  DigestMismatchError,
  ForbiddenError,
  type KnownRemoteError,
  PayloadTooLargeError,
  QuotaExceededError,
  type RemoteErrorCode,
  UnauthorizedError,
  UnknownArtifactError,
} from "./remote/errors.js";
export type { RuntimeStats } from "./runtime.js";
export { LABELS, Runtime, Runtime as LocalExecutor } from "./runtime.js";
