export {
  type Capability,
  DEFAULT_FRAME_TIMEOUT_MS,
  DEFAULT_MAX_DEPTH,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_MAX_VALUES,
  FRAME_HEADER_BYTES,
  MAX_CAPABILITIES,
  MAX_CAPABILITY_CHARS,
  MAX_DECLARABLE_FRAME_BYTES,
  MAX_ERROR_MESSAGE_CHARS,
  MAX_HELLO_STRING_CHARS,
  MAX_ID_CHARS,
  MAX_LOG_TEXT_CHARS,
  MAX_STACK_CHARS,
  MAX_TRACESTATE_CHARS,
  MIN_LIMITS,
  PROTOCOL_VERSION,
} from "./constants.js";
export {
  checkMaxFrameBytes,
  decodeJson,
  encodeFrame,
  encodeFrameWithin,
  encodeJsonFrame,
  FrameDecoder,
} from "./frame.js";
export { checkJsonLimits, type JsonLimits, mayBreakJsonLimits } from "./limits.js";
export type {
  AppHelloMessage,
  AppMessage,
  CancelMessage,
  ClientMessage,
  ErrorMessage,
  HelloMessage,
  HostHelloMessage,
  HostMessage,
  Limits,
  LogLevel,
  LogMessage,
  NameAndVersion,
  PingMessage,
  PongMessage,
  PrimeMessage,
  RemoteError,
  RequestMessage,
  ResponseMessage,
  ServerMessage,
  TraceContext,
} from "./messages.js";
export {
  parseAppMessage,
  parseClientMessage,
  parseHostMessage,
  parseServerMessage,
  parseTraceContext,
} from "./parse.js";
export type { MessageReaderOptions, Timers } from "./reader.js";
export { MessageReader } from "./reader.js";
export type { ViolationReason } from "./violation.js";
export { ProtocolViolationError } from "./violation.js";
