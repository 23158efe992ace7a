export { ArtifactFormatError } from "./errors.js";
export { ARTIFACT_LIMITS } from "./limits.js";
export {
  type ArtifactIndex,
  type ArtifactInfo,
  type ArtifactLayer,
  inspectArtifact,
  type ReadArtifactOptions,
  readArtifactIndex,
} from "./read-artifact.js";
