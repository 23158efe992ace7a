import { ProtocolViolationError } from "./violation.js";

export interface HelloMessage {
  type: "hello";
  protocol: number;
  maxConcurrency: number;
  maxFrameBytes: number;
  app?: { name?: string; version?: string };
}
export interface RequestMessage {
  type: "request";
  id: string;
  payload: unknown;
}
export interface CancelMessage {
  type: "cancel";
  id: string;
}
export interface ResponseMessage {
  type: "response";
  id: string;
  payload: unknown;
}
export interface RemoteError {
  type: string;
  message: string;
  details?: unknown;
}
export interface ErrorMessage {
  type: "error";
  id: string;
  error: RemoteError;
}
export type ClientMessage = RequestMessage | CancelMessage;
export type ServerMessage = HelloMessage | ResponseMessage | ErrorMessage;

type Fields = Record<string, unknown>;

function invalid(message: string): ProtocolViolationError {
  return new ProtocolViolationError("invalid-message", message);
}

function asObject(value: unknown): Fields {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalid("message is not a JSON object");
  }
  return value as Fields;
}

function requireId(message: Fields, type: string): void {
  if (typeof message.id !== "string" || message.id.length === 0) {
    throw invalid(`${type} message needs a non-empty string "id"`);
  }
}

function requirePayload(message: Fields, type: string): void {
  if (!("payload" in message)) throw invalid(`${type} message needs a "payload"`);
}

function isPositiveInteger(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value > 0;
}

/**
 * Checks the shape of a frame sent by a client. Returns the same object (no copy): extra fields
 * are allowed and ignored, so the protocol can grow without breaking older servers.
 */
export function parseClientMessage(value: unknown): ClientMessage {
  const message = asObject(value);
  switch (message.type) {
    case "request":
      requireId(message, "request");
      requirePayload(message, "request");
      return message as unknown as RequestMessage;
    case "cancel":
      requireId(message, "cancel");
      return message as unknown as CancelMessage;
    case "hello":
      throw new ProtocolViolationError("unexpected-hello", "a client must not send a hello message");
    default:
      throw invalid(`unknown client message type ${describeType(message.type)}`);
  }
}

/** Checks the shape of a frame sent by a server (what a runtime reads from a container). */
export function parseServerMessage(value: unknown): ServerMessage {
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
      return message as unknown as ErrorMessage;
    }
    case "hello": {
      if (!Number.isSafeInteger(message.protocol)) throw invalid('hello needs an integer "protocol"');
      if (!isPositiveInteger(message.maxConcurrency)) {
        throw invalid('hello needs a positive integer "maxConcurrency"');
      }
      if (!isPositiveInteger(message.maxFrameBytes)) {
        throw invalid('hello needs a positive integer "maxFrameBytes"');
      }
      const app = message.app;
      if (app !== undefined) {
        if (typeof app !== "object" || app === null || Array.isArray(app)) {
          throw invalid('hello "app" must be an object');
        }
        const { name, version } = app as Fields;
        if (name !== undefined && typeof name !== "string") {
          throw invalid('hello "app.name" must be a string');
        }
        if (version !== undefined && typeof version !== "string") {
          throw invalid('hello "app.version" must be a string');
        }
      }
      return message as unknown as HelloMessage;
    }
    default:
      throw invalid(`unknown server message type ${describeType(message.type)}`);
  }
}

function describeType(type: unknown): string {
  if (typeof type === "string") return JSON.stringify(type.length > 40 ? `${type.slice(0, 40)}…` : type);
  return `(${type === null ? "null" : typeof type})`;
}
