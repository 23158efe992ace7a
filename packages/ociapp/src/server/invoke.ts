import { MAX_ERROR_MESSAGE_CHARS, MAX_STACK_CHARS } from "../protocol/constants.js";
import type { RemoteError } from "../protocol/messages.js";

const MAX_ISSUES = 100;
/** An error's name travels as its type; a class name longer than this is a runaway. */
const MAX_TYPE_CHARS = 256;

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
    message: boundText(
      `${what} does not match its schema${summary ? `: ${summary}` : ""}`,
      MAX_ERROR_MESSAGE_CHARS,
    ),
    details: list,
  };
}

/**
 * What a throw becomes on the wire: the error's name as its type, its message, an own `details`
 * property as it is (dropped later if it does not encode), and its stack when stacks is set (the
 * app's errorStacks field). Never throws, whatever getters the thrown value has.
 */
export function thrownError(error: unknown, stage: string, stacks = false): RemoteError {
  try {
    if (error instanceof Error) {
      const name = error.name;
      const remote: RemoteError = {
        type: typeof name === "string" && name ? boundText(name, MAX_TYPE_CHARS) : "Error",
        message: boundText(String(error.message), MAX_ERROR_MESSAGE_CHARS),
      };
      const details = (error as { details?: unknown }).details;
      if (details !== undefined) remote.details = details;
      if (stacks) {
        const stack = error.stack;
        if (typeof stack === "string") remote.stack = boundText(stack, MAX_STACK_CHARS);
      }
      return remote;
    }
    return {
      type: "Error",
      message: boundText(`${stage} threw a non-Error value: ${describe(error)}`, MAX_ERROR_MESSAGE_CHARS),
    };
  } catch {
    return { type: "Error", message: `${stage} threw a value that cannot be described` };
  }
}

function describe(value: unknown): string {
  try {
    return typeof value === "string" ? value : (JSON.stringify(value) ?? String(value));
  } catch {
    return String(value);
  }
}

/** C0 controls but \n and \t, DEL, and C1 controls: what a terminal or a log viewer may act on. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point.
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point.
const CONTROLS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

function escapeControl(char: string): string {
  return `\\u00${char.charCodeAt(0).toString(16).padStart(2, "0")}`;
}

/**
 * text with control characters other than \n and \t written as the six characters \u00XX, cut to
 * maxChars as cutText does. For error frames' type, message and stack, which hosts print.
 */
export function boundText(text: string, maxChars: number): string {
  // Escaping only lengthens: maxChars of the input are all the output can hold.
  let out = text.length > maxChars ? text.slice(0, maxChars) : text;
  if (CONTROL.test(out)) out = out.replace(CONTROLS, escapeControl);
  return text.length > maxChars ? cutText(out, maxChars, true) : cutText(out, maxChars);
}

/** text if it has at most maxChars, else its start ending in "…", maxChars in all, never half a surrogate pair. */
export function cutText(text: string, maxChars: number, force = false): string {
  if (!force && text.length <= maxChars) return text;
  let end = Math.min(text.length, maxChars - 1);
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${text.slice(0, end)}…`;
}
