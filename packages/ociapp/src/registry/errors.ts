import { OciappError } from "../errors.js";

/**
 * A registry refused or failed an operation (HTTP status, auth, a malformed answer), or what it sent
 * does not match the digest it was asked for (`OCIAPP_REGISTRY_DIGEST`). Messages are one line.
 */
export class RegistryError extends OciappError {
  declare readonly code: "OCIAPP_REGISTRY" | "OCIAPP_REGISTRY_DIGEST" | "OCIAPP_REGISTRY_NOT_FOUND";
  /** The HTTP status, when the registry answered one. */
  readonly status: number | undefined;

  constructor(
    code: "OCIAPP_REGISTRY" | "OCIAPP_REGISTRY_DIGEST" | "OCIAPP_REGISTRY_NOT_FOUND",
    message: string,
    options?: { cause?: unknown; status?: number },
  ) {
    super(code, message, options);
    this.status = options?.status;
  }
}
