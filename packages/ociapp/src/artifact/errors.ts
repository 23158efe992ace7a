import { OciappError } from "../errors.js";

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
