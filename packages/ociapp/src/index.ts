export type { AnyApplication, ExecutionContext, PrimeSample } from "./application.js";
export { APPLICATION_BRAND, Application, isApplication } from "./application.js";
export { OciappError, OciappUsageError } from "./errors.js";
export { PROTOCOL_VERSION } from "./protocol/constants.js";
export type { TraceContext } from "./protocol/messages.js";
export type { CloseReason, ServeOptions, ServerHandle, ServerStats } from "./server/index.js";
export {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_MAX_CONCURRENCY,
  DEFAULT_SHUTDOWN_GRACE_MS,
  DEFAULT_SOCKET_PATH,
  MIN_MAX_FRAME_BYTES,
  OciappConnectError,
  serve,
} from "./server/index.js";
export { VERSION } from "./version.js";
