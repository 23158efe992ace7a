import { readFileSync } from "node:fs";
import { BuildError } from "./errors.js";
import type { BuildPhase } from "./phases.js";

export interface BuildOptions {
  /** the app's folder: its package.json holds the "ociapp" configuration */
  projectRoot: string;
  /** where <name>-<version>.ociapp is written; the project root by default */
  outputDir?: string;
  /** buildx --network for RUN steps (e.g. "host"); the engine's default when unset */
  network?: string;
  /** overrides the config's baseImage and the default node:<host Node major>-bookworm-slim */
  baseImage?: string;
  /** build without buildx's layer cache, and never reuse an existing artifact. Default false. */
  noCache?: boolean;
  /**
   * managed mode: bundle `ociapp serve`, the SDK, the app and its dependencies into one ES module
   * with esbuild and make it the image's entrypoint, when that is safe (else the installed files
   * run, and the build says why in one line). Saves a cold start about 40-50 ms on Node 20. Default
   * true; custom Containerfiles are never touched.
   */
  bundle?: boolean;
  /** what reaches onProgress: "auto" and "plain" forward buildx's plain progress, "quiet" nothing. Default "quiet". */
  progress?: "auto" | "plain" | "quiet";
  /** layer compression; gzip by default */
  compression?: "gzip" | "zstd";
  /** the image reference recorded in the artifact (what `docker load` names it); <name>:<version> by default */
  image?: string;
  signal?: AbortSignal;
  onProgress?: (chunk: string) => void;
  /** where the build is, whatever `progress` says (see BuildPhase); the CLI's one updating line */
  onPhase?: (phase: BuildPhase) => void;
  /** environment for the child processes (docker, npm); merged over process.env */
  env?: Record<string, string | undefined>;
}

export interface BuildResult {
  /** absolute path of the .ociapp file */
  path: string;
  bytes: number;
  /** sha256 digest of the image manifest index.json points at: the artifact's identity */
  digest: string;
  /** the image reference the artifact carries */
  image: string;
  /** true when the artifact already there was built from the same context and kept: buildx did not run */
  reused: boolean;
  /**
   * the image's entrypoint is the bundled entry (managed mode; see BuildOptions.bundle), and the
   * build's one line saying so or why not
   */
  entry: { bundled: boolean; note: string };
  /**
   * production dependencies with install scripts ("name@version"), installed and compiled in a
   * builder stage (managed mode; empty otherwise, and for apps without any)
   */
  native: string[];
}

const PROGRESS = ["auto", "plain", "quiet"] as const;
const COMPRESSION = ["gzip", "zstd"] as const;
const IMAGE_REFERENCE = /^[a-z0-9][a-z0-9._\-/:]*$/;
const NETWORK = /^[A-Za-z0-9][\w.:-]*$/;

/** ociapp-build's version, from its package.json. */
export function toolVersion(): string {
  const packageJson = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  return packageJson.version;
}

export interface ValidOptions {
  projectRoot: string;
  outputDir: string | undefined;
  network: string | undefined;
  baseImage: string | undefined;
  noCache: boolean;
  bundle: boolean;
  progress: (typeof PROGRESS)[number];
  compression: (typeof COMPRESSION)[number];
  image: string | undefined;
  signal: AbortSignal | undefined;
  onProgress: ((chunk: string) => void) | undefined;
  onPhase: ((phase: BuildPhase) => void) | undefined;
  env: Record<string, string | undefined> | undefined;
}

export function validateOptions(options: BuildOptions): ValidOptions {
  const invalid = (name: string, value: unknown, expected: string) =>
    new BuildError(
      "OCIAPP_BUILD_INVALID_OPTION",
      `invalid ${name} ${JSON.stringify(value)}: expected ${expected}`,
    );
  if (typeof options !== "object" || options === null) throw invalid("options", options, "an object");
  if (typeof options.projectRoot !== "string" || options.projectRoot.length === 0) {
    throw invalid("projectRoot", options.projectRoot, "a path");
  }
  if (
    options.outputDir !== undefined &&
    (typeof options.outputDir !== "string" || options.outputDir.length === 0)
  ) {
    throw invalid("outputDir", options.outputDir, "a path");
  }
  if (
    options.network !== undefined &&
    (typeof options.network !== "string" || !NETWORK.test(options.network))
  ) {
    throw invalid("network", options.network, 'a network mode such as "host", "none" or "default"');
  }
  if (
    options.baseImage !== undefined &&
    (typeof options.baseImage !== "string" || !/^[A-Za-z0-9][\w.\-/:@]*$/.test(options.baseImage))
  ) {
    throw invalid("baseImage", options.baseImage, "an image reference");
  }
  if (
    options.image !== undefined &&
    (typeof options.image !== "string" || !IMAGE_REFERENCE.test(options.image))
  ) {
    throw invalid("image", options.image, "a lowercase image reference such as my-app:1.0.0");
  }
  const progress = options.progress ?? "quiet";
  if (!PROGRESS.includes(progress)) throw invalid("progress", options.progress, PROGRESS.join(" | "));
  const compression = options.compression ?? "gzip";
  if (!COMPRESSION.includes(compression))
    throw invalid("compression", options.compression, COMPRESSION.join(" | "));
  for (const name of ["onProgress", "onPhase"] as const) {
    if (options[name] !== undefined && typeof options[name] !== "function") {
      throw invalid(name, typeof options[name], "a function");
    }
  }
  return {
    projectRoot: options.projectRoot,
    outputDir: options.outputDir,
    network: options.network,
    baseImage: options.baseImage,
    noCache: options.noCache === true,
    bundle: options.bundle !== false,
    progress,
    compression,
    image: options.image,
    signal: options.signal,
    onProgress: options.onProgress,
    onPhase: options.onPhase,
    env: options.env,
  };
}
