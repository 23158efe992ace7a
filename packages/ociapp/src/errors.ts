/**
 * Base class of every error the ociapp package throws. `code` is a stable string that callers may
 * switch on; the message is for humans and may change.
 */
export class OciappError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A user mistake that the CLI reports as one line (bad option, unloadable app, busy socket). */
export class OciappUsageError extends OciappError {}
