import { RegistryError } from "./errors.js";

export interface ArtifactReference {
  /** `host[:port]` */
  registry: string;
  /** `path/to/repo` (lowercase, OCI distribution spec grammar) */
  repository: string;
  tag?: string;
}

const REPOSITORY = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

/** Parses `host[:port]/repository[:tag]`: the host part must hold a dot or a colon, or be localhost. */
export function parseReference(reference: string): ArtifactReference {
  const slash = reference.indexOf("/");
  const registry = reference.slice(0, slash);
  if (slash <= 0 || !(registry.includes(".") || registry.includes(":") || registry === "localhost")) {
    throw new RegistryError(
      "OCIAPP_REGISTRY",
      `${JSON.stringify(reference.slice(0, 200))} is not registry/repository[:tag] (e.g. registry.example:5000/apps/echo)`,
    );
  }
  let rest = reference.slice(slash + 1);
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon !== -1) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag))
      throw new RegistryError("OCIAPP_REGISTRY", `invalid tag ${JSON.stringify(tag.slice(0, 200))}`);
  }
  if (!REPOSITORY.test(rest) || rest.length > 255) {
    throw new RegistryError(
      "OCIAPP_REGISTRY",
      `invalid repository name ${JSON.stringify(rest.slice(0, 200))}`,
    );
  }
  return tag === undefined ? { registry, repository: rest } : { registry, repository: rest, tag };
}
