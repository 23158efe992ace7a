export {
  DEFAULT_FRAME_TIMEOUT_MS,
  DEFAULT_MAX_FRAME_BYTES,
  FRAME_HEADER_BYTES,
  MAX_DECLARABLE_FRAME_BYTES,
  PROTOCOL_VERSION,
} from "./constants.js";
export { checkMaxFrameBytes, decodeJson, encodeFrame, FrameDecoder } from "./frame.js";
export type {
  CancelMessage,
  ClientMessage,
  ErrorMessage,
  HelloMessage,
  RemoteError,
  RequestMessage,
  ResponseMessage,
  ServerMessage,
} from "./messages.js";
export { parseClientMessage, parseServerMessage } from "./messages.js";
export type { MessageReaderOptions, Timers } from "./reader.js";
export { MessageReader } from "./reader.js";
export type { ViolationReason } from "./violation.js";
export { ProtocolViolationError } from "./violation.js";
