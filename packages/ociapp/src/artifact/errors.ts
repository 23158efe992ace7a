import { OciappError } from "../errors.js";
import { printable } from "./printable.js";

/**
 * A .ociapp file that is not a well-formed OCI image layout tarball. Artifacts may come from an
 * untrusted party, so every structural problem (a truncated header, an oversize JSON document, a
 * digest that does not match its blob) surfaces as this one error type with a single-line message.
 */
export class ArtifactFormatError extends OciappError {
  declare readonly code: "OCIAPP_ARTIFACT_INVALID";

  constructor(message: string, options?: { cause?: unknown }) {
    super("OCIAPP_ARTIFACT_INVALID", message, options);
  }
}

/** Why an artifact path could not be read: see {@link ArtifactFileError}. */
export type ArtifactFileReason = "missing" | "not-regular" | "unreadable";

/**
 * An artifact path that is not a readable regular file: `missing` (ENOENT, ENOTDIR), `not-regular`
 * (a directory, FIFO, socket or device, also when the path was swapped for one while it was being
 * opened) or `unreadable` (EACCES, ELOOP, ...). Thrown at once, never after blocking: see
 * {@link openArtifact}. The message is one line, "cannot read artifact <path>: <why>", control
 * characters in the path escaped.
 */
export class ArtifactFileError extends OciappError {
  declare readonly code: "OCIAPP_ARTIFACT_FILE";
  /** the path as the caller gave it (not escaped) */
  readonly path: string;
  readonly reason: ArtifactFileReason;

  constructor(path: string, reason: ArtifactFileReason, why: string, options?: { cause?: unknown }) {
    super("OCIAPP_ARTIFACT_FILE", `cannot read artifact ${printable(path)}: ${why}`, options);
    this.path = path;
    this.reason = reason;
  }
}
