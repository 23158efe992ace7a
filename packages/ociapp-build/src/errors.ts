export type BuildErrorCode =
  | "OCIAPP_BUILD_INVALID_OPTION"
  | "OCIAPP_BUILD_NO_PACKAGE_JSON"
  | "OCIAPP_BUILD_INVALID_PACKAGE_JSON"
  | "OCIAPP_BUILD_NO_CONFIG"
  | "OCIAPP_BUILD_INVALID_CONFIG"
  | "OCIAPP_BUILD_CONTAINERFILE_MISSING"
  | "OCIAPP_BUILD_SDK_MISSING"
  | "OCIAPP_BUILD_SDK_NOT_BUILT"
  | "OCIAPP_BUILD_UNSUPPORTED_DEPENDENCY"
  | "OCIAPP_BUILD_SCRIPT_FAILED"
  | "OCIAPP_BUILD_PACK_FAILED"
  | "OCIAPP_BUILD_ENTRYPOINT_MISSING"
  | "OCIAPP_BUILD_DOCKER_NOT_FOUND"
  | "OCIAPP_BUILD_BUILDX_MISSING"
  | "OCIAPP_BUILD_ENGINE_UNAVAILABLE"
  | "OCIAPP_BUILD_FAILED"
  | "OCIAPP_BUILD_APP_INVALID"
  | "OCIAPP_BUILD_NODE_HEADERS_MISSING"
  | "OCIAPP_BUILD_ABORTED";

/**
 * Every failure of a build. `message` is one line a user can act on; `output` carries the failing
 * step's output when there is one (a RUN step of the image build, or the app's build script).
 */
export class BuildError extends Error {
  readonly code: BuildErrorCode;
  readonly output: string | undefined;

  constructor(code: BuildErrorCode, message: string, options: { cause?: unknown; output?: string } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "BuildError";
    this.code = code;
    this.output = options.output;
  }
}
