import {
  MAX_CAPABILITIES,
  MAX_CAPABILITY_CHARS,
  MAX_DECLARABLE_FRAME_BYTES,
  MAX_HELLO_STRING_CHARS,
  MAX_ID_CHARS,
  MAX_LOG_TEXT_CHARS,
  MAX_TRACESTATE_CHARS,
  MIN_LIMITS,
  PROTOCOL_VERSION,
} from "./constants.js";
import type {
  AppHelloMessage,
  AppMessage,
  CancelMessage,
  ErrorMessage,
  HostHelloMessage,
  HostMessage,
  LogMessage,
  PingMessage,
  PongMessage,
  PrimeMessage,
  RequestMessage,
  ResponseMessage,
  TraceContext,
} from "./messages.js";
import { ProtocolViolationError } from "./violation.js";

// Shape checks without zod (the runtime's hot path imports this). Each returns the object it was
// given, not a copy: extra fields are allowed and ignored, so the protocol can grow without breaking
// older peers. Known fields of the wrong type are violations ("invalid-message"). Which frame may
// come when (the hello first and once) is the connection's business, not these functions'.

type Fields = Record<string, unknown>;

function invalid(message: string): ProtocolViolationError {
  return new ProtocolViolationError("invalid-message", message);
}

function asObject(value: unknown, what = "message"): Fields {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalid(`${what} is not a JSON object`);
  }
  return value as Fields;
}

function requireId(message: Fields, type: string): void {
  const id = message.id;
  if (typeof id !== "string" || id.length === 0 || id.length > MAX_ID_CHARS) {
    throw invalid(`${type} message needs a string "id" of 1 to ${MAX_ID_CHARS} chars`);
  }
}

function requirePayload(message: Fields, type: string): void {
  if (!("payload" in message)) throw invalid(`${type} message needs a "payload"`);
}

function isIntegerIn(value: unknown, min: number, max: number): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= min && value <= max;
}

/** Checks the shape of a frame the host sent (what `ociapp serve` reads). */
export function parseHostMessage(value: unknown): HostMessage {
  const message = asObject(value);
  switch (message.type) {
    case "request":
      requireId(message, "request");
      requirePayload(message, "request");
      return message as unknown as RequestMessage;
    case "prime":
      requireId(message, "prime");
      return message as unknown as PrimeMessage;
    case "cancel":
      requireId(message, "cancel");
      return message as unknown as CancelMessage;
    case "ping":
      requireId(message, "ping");
      if (message.prime !== undefined && typeof message.prime !== "boolean") {
        throw invalid('ping "prime" must be a boolean');
      }
      return message as unknown as PingMessage;
    case "hello":
      checkHello(message, "host");
      if (message.logRecords !== undefined && typeof message.logRecords !== "boolean") {
        throw invalid('hello "logRecords" must be a boolean');
      }
      return message as unknown as HostHelloMessage;
    default:
      throw invalid(`unknown host message type ${describeType(message.type)}`);
  }
}

const LOG_LEVELS: ReadonlySet<unknown> = new Set(["debug", "info", "warn", "error"]);

/** Checks the shape of a frame the app sent (what a runtime reads from a container). */
export function parseAppMessage(value: unknown): AppMessage {
  const message = asObject(value);
  switch (message.type) {
    case "response":
      requireId(message, "response");
      requirePayload(message, "response");
      return message as unknown as ResponseMessage;
    case "error": {
      requireId(message, "error");
      const error = message.error;
      if (
        typeof error !== "object" ||
        error === null ||
        Array.isArray(error) ||
        typeof (error as Fields).type !== "string" ||
        typeof (error as Fields).message !== "string"
      ) {
        throw invalid('error message needs "error": {"type": string, "message": string}');
      }
      const stack = (error as Fields).stack;
      if (stack !== undefined && typeof stack !== "string") throw invalid('error "stack" must be a string');
      return message as unknown as ErrorMessage;
    }
    case "pong":
      requireId(message, "pong");
      return message as unknown as PongMessage;
    case "log":
      if (!LOG_LEVELS.has(message.level)) {
        throw invalid('log message needs a "level": "debug", "info", "warn" or "error"');
      }
      if (message.id !== undefined) requireId(message, "log");
      if (typeof message.text !== "string" || message.text.length > MAX_LOG_TEXT_CHARS) {
        throw invalid(`log message needs a "text" of at most ${MAX_LOG_TEXT_CHARS} chars`);
      }
      if (message.dropped !== undefined && !isIntegerIn(message.dropped, 0, Number.MAX_SAFE_INTEGER)) {
        throw invalid('log "dropped" must be a non-negative integer');
      }
      return message as unknown as LogMessage;
    case "hello":
      checkHello(message, "app");
      if (!isIntegerIn(message.maxConcurrency, 1, Number.MAX_SAFE_INTEGER)) {
        throw invalid('hello needs a positive integer "maxConcurrency"');
      }
      checkNameAndVersion(message.app, "app");
      checkNameAndVersion(message.sdk, "sdk");
      return message as unknown as AppHelloMessage;
    default:
      throw invalid(`unknown app message type ${describeType(message.type)}`);
  }
}

/** Protocol 1 names of the two parsers. */
export const parseClientMessage: (value: unknown) => HostMessage = parseHostMessage;
export const parseServerMessage: (value: unknown) => AppMessage = parseAppMessage;

/**
 * The fields both hellos share. The protocol is checked first, so that a peer of another version is
 * told so rather than that its hello lacks a v2 field.
 */
function checkHello(message: Fields, role: "host" | "app"): void {
  const protocol = message.protocol;
  if (!Number.isSafeInteger(protocol)) throw invalid('hello needs an integer "protocol"');
  if (protocol !== PROTOCOL_VERSION) {
    throw invalid(
      `protocol mismatch: the ${role} speaks protocol ${String(protocol)}, this side speaks ${PROTOCOL_VERSION}`,
    );
  }
  if (message.role !== role) {
    throw invalid(`hello "role" must be "${role}" here, got ${describeType(message.role)}`);
  }
  const limits = asObject(message.limits, 'hello "limits"');
  const bounds: [keyof typeof MIN_LIMITS, number][] = [
    ["maxFrameBytes", MAX_DECLARABLE_FRAME_BYTES],
    ["maxDepth", Number.MAX_SAFE_INTEGER],
    ["maxValues", Number.MAX_SAFE_INTEGER],
  ];
  for (const [name, max] of bounds) {
    if (!isIntegerIn(limits[name], MIN_LIMITS[name], max)) {
      throw invalid(`hello "limits.${name}" must be an integer from ${MIN_LIMITS[name]} to ${max}`);
    }
  }
  const capabilities = message.capabilities;
  if (
    !Array.isArray(capabilities) ||
    capabilities.length > MAX_CAPABILITIES ||
    !capabilities.every(
      (name) => typeof name === "string" && name.length > 0 && name.length <= MAX_CAPABILITY_CHARS,
    )
  ) {
    throw invalid(
      `hello "capabilities" must be a list of at most ${MAX_CAPABILITIES} strings of 1 to ${MAX_CAPABILITY_CHARS} chars`,
    );
  }
}

function checkNameAndVersion(value: unknown, field: string): void {
  if (value === undefined) return;
  const object = asObject(value, `hello "${field}"`);
  for (const key of ["name", "version"]) {
    const text = object[key];
    if (text !== undefined && (typeof text !== "string" || text.length > MAX_HELLO_STRING_CHARS)) {
      throw invalid(`hello "${field}.${key}" must be a string of at most ${MAX_HELLO_STRING_CHARS} chars`);
    }
  }
}

const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;
const TRACEPARENT_CHARS = 55;

/**
 * A request's trace field as the app sees it (context.trace): a traceparent of the W3C form, lowercase,
 * and a tracestate of 1 to 512 chars. A malformed traceparent drops the whole trace and a malformed
 * tracestate drops just itself, as W3C asks of a receiver; neither is a violation.
 */
export function parseTraceContext(value: unknown): TraceContext | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { traceparent, tracestate } = value as Fields;
  if (
    typeof traceparent !== "string" ||
    traceparent.length !== TRACEPARENT_CHARS ||
    !TRACEPARENT.test(traceparent)
  ) {
    return undefined;
  }
  if (typeof tracestate === "string" && tracestate.length > 0 && tracestate.length <= MAX_TRACESTATE_CHARS) {
    return { traceparent, tracestate };
  }
  return { traceparent };
}

function describeType(type: unknown): string {
  if (typeof type === "string") return JSON.stringify(type.length > 40 ? `${type.slice(0, 40)}…` : type);
  return `(${type === null ? "null" : typeof type})`;
}
