export type { CloseReason, ServeOptions, ServerHandle, ServerStats } from "./server.js";
export {
  DEFAULT_MAX_CONCURRENCY,
  DEFAULT_SHUTDOWN_GRACE_MS,
  DEFAULT_SOCKET_PATH,
  MIN_MAX_FRAME_BYTES,
  serve,
} from "./server.js";
