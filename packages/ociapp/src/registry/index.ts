/**
 * Moves .ociapp artifacts to and from OCI registries (OCI distribution spec v1.1): `pushArtifact`
 * uploads an artifact's image (`ociapp-build push`), `pullArtifact` writes one back as a .ociapp
 * file, verifying the manifest and every blob against their digests (what an agent does when it lacks
 * an artifact). `RegistryClient` is the small HTTP client under both.
 */
export { MANIFEST_ACCEPT, RegistryClient, type RegistryClientOptions } from "./client.js";
export { RegistryError } from "./errors.js";
export { type ArtifactReference, parseReference } from "./reference.js";
export { type PullOptions, type PushOptions, pullArtifact, pushArtifact } from "./transfer.js";
