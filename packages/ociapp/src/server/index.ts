export { OciappConnectError } from "./connect.js";
export type { ServeOptions } from "./options.js";
export {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_MAX_CONCURRENCY,
  DEFAULT_SHUTDOWN_GRACE_MS,
  DEFAULT_SOCKET_PATH,
  MIN_MAX_FRAME_BYTES,
} from "./options.js";
export type { CloseReason, ServerHandle, ServerStats } from "./server.js";
export { serve } from "./server.js";
