/**
 * Reads .ociapp artifacts: uncompressed tars of an OCI image layout as buildx writes them (blobs first,
 * index.json and oci-layout last), treated as untrusted input.
 *
 * - Only tar headers are walked (positional reads, bodies skipped) and only index.json, a nested index
 *   and the image manifest are read, each at most ARTIFACT_LIMITS.maxJsonBytes; blobs that are read
 *   are checked against their sha256 names. Every structural problem is an ArtifactFormatError.
 * - readArtifactIndex gives the identity and the image manifest's annotations, protocol included
 *   (dev.ociapp.protocol, PROTOCOL_ANNOTATION), reading no layer; inspectArtifact adds the layers.
 * - The artifact's identity is the digest of the image manifest that index.json points at. When it
 *   points at an index (a multi-platform build), the reader follows it to the one image it lists, or
 *   else to this host's linux platform, or else linux/amd64, skipping attestation manifests; the
 *   digest is that manifest's, which (with the containerd image store) is also the image ID the engine
 *   reports after `docker load`.
 * - An artifact path is opened only as a regular file, and never blocks: openArtifact (a FileHandle),
 *   openArtifactStream (a ReadStream over that handle) and statArtifact (identity checks) refuse a
 *   FIFO, a socket, a device, a directory or a missing path with ArtifactFileError at once. Every
 *   reader here goes through openArtifact.
 * - What an artifact says (annotations, names, media types) is returned as it is; printable,
 *   printableLines, quote and printableJson make it safe to show on a terminal.
 */
export {
  ArtifactFileError,
  type ArtifactFileReason,
  ArtifactFormatError,
} from "./errors.js";
export { ARTIFACT_LIMITS } from "./limits.js";
export {
  type OpenArtifactOptions,
  type OpenArtifactStreamOptions,
  openArtifact,
  openArtifactStream,
  statArtifact,
} from "./open-artifact.js";
export { printable, printableJson, printableLines, quote } from "./printable.js";
export {
  type ArtifactIndex,
  type ArtifactInfo,
  type ArtifactLayer,
  inspectArtifact,
  PROTOCOL_ANNOTATION,
  type ReadArtifactOptions,
  readArtifactIndex,
} from "./read-artifact.js";
export {
  RUNTIME_DEFAULTS,
  type RuntimeDefaults,
  readRuntimeDefaults,
  runtimeDefaultsAnnotations,
} from "./runtime-defaults.js";
/** The tar header fields both artifact readers and the agent's upload verifier parse (TarHeaderError on a malformed one). */
export * as tarHeader from "./tar-header.js";
