/** Version both hellos carry; bumped on any incompatible wire change. This SDK speaks 2 only. */
export const PROTOCOL_VERSION = 2;
/** Every frame starts with a 4-byte unsigned big-endian body length. */
export const FRAME_HEADER_BYTES = 4;
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;
/** Deepest nesting of arrays/objects a receiver accepts by default (the top-level object is 1). */
export const DEFAULT_MAX_DEPTH = 64;
/**
 * Values a receiver accepts in one frame by default: the top-level value, every array element and
 * every object member's value, nested included (object keys are not values). 100,000 keeps the
 * worst frame within it (one object of 100,000 members) at about 70 ms of JSON.parse and 7 MiB of
 * heap on a 2-core machine, where 1,000,000 measured 690 ms and 71 MiB (`pnpm bench`, parsing).
 */
export const DEFAULT_MAX_VALUES = 100_000;
/** Once a frame's first byte has arrived, the rest must arrive within this long. */
export const DEFAULT_FRAME_TIMEOUT_MS = 30_000;
/** The largest length a 4-byte header can declare; an upper bound for maxFrameBytes. */
export const MAX_DECLARABLE_FRAME_BYTES = 0xffff_ffff;

/**
 * The smallest limits a hello may announce: below them not even the protocol's own frames (an error
 * frame without details, a pong, a log record) are sure to fit, so a side could not answer at all.
 */
export const MIN_LIMITS = { maxFrameBytes: 1024, maxDepth: 4, maxValues: 64 } as const;

/** Request, cancel, ping, answer and log ids: 1 to this many UTF-16 code units. */
export const MAX_ID_CHARS = 128;
/** Hello strings: app/sdk name and version. */
export const MAX_HELLO_STRING_CHARS = 256;
/** Entries in a hello's capabilities list, and the length of each. */
export const MAX_CAPABILITIES = 64;
export const MAX_CAPABILITY_CHARS = 64;
/** W3C tracestate, as the request's trace carries it. */
export const MAX_TRACESTATE_CHARS = 512;
/** An error frame's message, and a log frame's text (longer ones are cut, ending in "…"). */
export const MAX_ERROR_MESSAGE_CHARS = 8 * 1024;
export const MAX_LOG_TEXT_CHARS = 8 * 1024;
/** An error frame's stack, when the app opts in. */
export const MAX_STACK_CHARS = 16 * 1024;

/**
 * Optional features a side lists in its hello's capabilities. A side uses one only when the peer
 * listed it, and ignores names it does not know.
 * - cancel: the app honours cancel frames. ping: the app answers ping with pong.
 * - prime: `ping` with `prime: true` primes the app's request path (once per process), running its
 *   prime() hook first when it has one.
 * - prime-request: the app answers `prime` frames (its request path without execute).
 * - log: the app sends console output as log frames when the host asks (logRecords).
 * - trace: the app hands a request's trace context to execute.
 * - stack: the app's error frames carry stacks (its errorStacks field is on).
 */
export type Capability = "cancel" | "ping" | "prime" | "prime-request" | "log" | "trace" | "stack";
