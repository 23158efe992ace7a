export type { AnyApplication, ExecutionContext } from "./application.js";
export { APPLICATION_BRAND, Application, isApplication } from "./application.js";
export { OciappError, OciappUsageError } from "./errors.js";
export { PROTOCOL_VERSION } from "./protocol/constants.js";
export type { ServeOptions, ServerHandle, ServerStats } from "./server/index.js";
export { serve } from "./server/index.js";

export const VERSION = "0.1.0";
