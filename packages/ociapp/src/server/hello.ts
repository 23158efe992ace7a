import type { AnyApplication } from "../application.js";
import { type Capability, MAX_HELLO_STRING_CHARS, PROTOCOL_VERSION } from "../protocol/constants.js";
import { encodeFrame } from "../protocol/frame.js";
import type { AppHelloMessage, NameAndVersion } from "../protocol/messages.js";
import { VERSION } from "../version.js";
import { cutText } from "./invoke.js";
import type { ServerSettings } from "./options.js";

/**
 * What this app can do, for its hello: "prime" always (a prime ping primes the server's request
 * path, and runs the app's prime() hook when it has one), "stack" only when its errorStacks field is on.
 */
export function appCapabilities(app: AnyApplication): Capability[] {
  const capabilities: Capability[] = ["cancel", "ping", "prime", "prime-request", "log", "trace"];
  if (app.errorStacks === true) capabilities.push("stack");
  return capabilities;
}

/** The hello `ociapp serve` sends first on every connection, encoded once. */
export function encodeAppHello(settings: ServerSettings): Buffer {
  const hello: AppHelloMessage = {
    type: "hello",
    protocol: PROTOCOL_VERSION,
    role: "app",
    maxConcurrency: settings.maxConcurrency,
    limits: {
      maxFrameBytes: settings.maxFrameBytes,
      maxDepth: settings.maxDepth,
      maxValues: settings.maxValues,
    },
    capabilities: appCapabilities(settings.app),
  };
  const { name, version } = settings.appInfo;
  if (name !== undefined || version !== undefined) {
    // Bounded as the host's parser requires: a runaway package.json must not make the hello a violation.
    const app: NameAndVersion = {};
    if (name !== undefined) app.name = cutText(name, MAX_HELLO_STRING_CHARS);
    if (version !== undefined) app.version = cutText(version, MAX_HELLO_STRING_CHARS);
    hello.app = app;
  }
  hello.sdk = { name: "ociapp", version: VERSION };
  return encodeFrame(hello);
}
