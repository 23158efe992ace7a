import type { AnyApplication } from "../application.js";
import type { RemoteError } from "../protocol/messages.js";
import { type Cancellation, RequestContext } from "./cancellation.js";

export type Outcome = { ok: true; payload: unknown } | { ok: false; error: RemoteError };

/** Longest error message sent back; a runaway message must not turn into an oversize frame. */
const MAX_MESSAGE_CHARS = 8 * 1024;
const MAX_ISSUES = 100;

interface ParseResult {
  success: boolean;
  data?: unknown;
  error?: { issues?: unknown };
}

/** Parses with the app's own zod schema (zod 4's safeParseAsync). */
type Schema = { safeParseAsync(value: unknown): Promise<ParseResult> };

export function cancelled(message: string): Outcome {
  return { ok: false, error: { type: "Cancelled", message } };
}

/** Parses the payload with the app's request schema. Never throws. */
export async function validateRequest(app: AnyApplication, payload: unknown): Promise<Outcome> {
  try {
    const request = await (app.request as unknown as Schema).safeParseAsync(payload);
    if (request.success) return { ok: true, payload: request.data };
    return { ok: false, error: validationError("ValidationError", "request", request.error?.issues) };
  } catch (error) {
    return { ok: false, error: thrownError(error, "request validation") };
  }
}

/**
 * Runs execute on a validated request, then the response schema. Never throws: every failure
 * becomes the error outcome the wire protocol names.
 */
export async function execute(
  app: AnyApplication,
  request: unknown,
  requestId: string,
  cancellation: Cancellation,
): Promise<Outcome> {
  let stage = "execute";
  try {
    const result = await app.execute(request, new RequestContext(requestId, cancellation));
    if (cancellation.aborted) return cancelled(cancellation.message);
    stage = "response validation";
    const response = await (app.response as unknown as Schema).safeParseAsync(result);
    if (!response.success) {
      return {
        ok: false,
        error: validationError("ResponseValidationError", "response", response.error?.issues),
      };
    }
    return { ok: true, payload: response.data };
  } catch (error) {
    if (cancellation.aborted) return cancelled(cancellation.message);
    return { ok: false, error: thrownError(error, stage) };
  }
}

function validationError(type: string, what: string, issues: unknown): RemoteError {
  const list = Array.isArray(issues) ? issues.slice(0, MAX_ISSUES) : [];
  const summary = list
    .slice(0, 3)
    .map((issue: { path?: unknown[]; message?: unknown }) => {
      const path = Array.isArray(issue.path) && issue.path.length > 0 ? issue.path.join(".") : "(root)";
      return `${path}: ${String(issue.message)}`;
    })
    .join("; ");
  return {
    type,
    message: truncate(`${what} does not match its schema${summary ? `: ${summary}` : ""}`),
    details: list,
  };
}

function thrownError(error: unknown, stage: string): RemoteError {
  if (error instanceof Error) {
    const remote: RemoteError = {
      type: typeof error.name === "string" && error.name ? error.name : "Error",
      message: truncate(String(error.message)),
    };
    // An app may attach JSON details to its error; they travel as they are (dropped if unserialisable).
    const details = (error as { details?: unknown }).details;
    if (details !== undefined) remote.details = details;
    return remote;
  }
  return { type: "Error", message: truncate(`${stage} threw a non-Error value: ${describe(error)}`) };
}

function describe(value: unknown): string {
  try {
    return typeof value === "string" ? value : (JSON.stringify(value) ?? String(value));
  } catch {
    return String(value);
  }
}

function truncate(message: string): string {
  return message.length > MAX_MESSAGE_CHARS ? `${message.slice(0, MAX_MESSAGE_CHARS)}…` : message;
}
