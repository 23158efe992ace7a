export { type BuildOptions, type BuildResult, build } from "./build.js";
export { type CustomConfig, type ManagedConfig, type OciappConfig, parseOciappConfig } from "./config.js";
export { CONTEXT_ANNOTATION } from "./context-digest.js";
export { BuildError, type BuildErrorCode } from "./errors.js";
export { artifactFileName, defaultBaseImage, defaultImageReference, flattenPackageName } from "./naming.js";
export { type BuildPhase, describePhase } from "./phases.js";
export { renderContainerfile } from "./template.js";
