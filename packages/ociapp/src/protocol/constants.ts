/** Version announced in the hello frame; bumped on any incompatible wire change. */
export const PROTOCOL_VERSION = 1;
/** Every frame starts with a 4-byte unsigned big-endian body length. */
export const FRAME_HEADER_BYTES = 4;
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;
/** Once a frame's first byte has arrived, the rest must arrive within this long. */
export const DEFAULT_FRAME_TIMEOUT_MS = 30_000;
/** The largest length a 4-byte header can declare; an upper bound for maxFrameBytes. */
export const MAX_DECLARABLE_FRAME_BYTES = 0xffff_ffff;
