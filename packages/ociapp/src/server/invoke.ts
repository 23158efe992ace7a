import type { RemoteError } from "../protocol/messages.js";

/** Longest error message sent back; a runaway message must not turn into an oversize frame. */
const MAX_MESSAGE_CHARS = 8 * 1024;
const MAX_ISSUES = 100;

export interface ParseResult {
  success: boolean;
  data?: unknown;
  error?: { issues?: unknown };
}

/** The part of the app's own zod schema the server uses. */
interface Schema {
  safeParse(value: unknown): ParseResult;
  safeParseAsync(value: unknown): Promise<ParseResult>;
}

/**
 * Parses with one of the app's schemas. safeParse first: safeParseAsync costs several times more
 * (a promise and microtask hops per call) and almost every schema is synchronous. A schema with an
 * async refinement or transform makes zod throw its async error from safeParse; the parser then
 * remembers that the schema is async and uses safeParseAsync from that call on.
 */
export class SchemaParser {
  readonly #schema: Schema;
  #async = false;

  constructor(schema: unknown) {
    this.#schema = schema as Schema;
  }

  get async(): boolean {
    return this.#async;
  }

  /** The result, or a promise of it once the schema proved async. Throws what the schema throws. */
  parse(value: unknown): ParseResult | Promise<ParseResult> {
    if (this.#async) return this.#schema.safeParseAsync(value);
    try {
      return this.#schema.safeParse(value);
    } catch (error) {
      if (!isZodAsyncError(error)) throw error;
      this.#async = true;
      return this.#schema.safeParseAsync(value);
    }
  }
}

/**
 * zod's "use parseAsync" error, recognised by name and message rather than by class: the app's copy
 * of zod is not necessarily ours. zod 4 throws $ZodAsyncError; zod 3 threw a plain Error.
 */
export function isZodAsyncError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (error.constructor?.name === "$ZodAsyncError") return true;
  const message = String(error.message);
  return (
    message.startsWith("Encountered Promise during synchronous parse") ||
    message.startsWith("Synchronous parse encountered promise") ||
    message.startsWith("Asynchronous refinement encountered during synchronous parse")
  );
}

export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === "object" || typeof value === "function") &&
    typeof (value as { then?: unknown }).then === "function"
  );
}

export function cancelledError(message: string): RemoteError {
  return { type: "Cancelled", message };
}

export function validationError(type: string, what: string, issues: unknown): RemoteError {
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

export function thrownError(error: unknown, stage: string): RemoteError {
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
