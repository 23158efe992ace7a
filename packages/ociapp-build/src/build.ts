import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rename, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import {
  ArtifactFileError,
  ArtifactFormatError,
  PROTOCOL_ANNOTATION,
  printable,
  quote,
  readArtifactIndex,
} from "ociapp/artifact";
import { checkBuildx, runBuildx } from "./buildx.js";
import { BuildError } from "./errors.js";
import { artifactFileName, defaultBaseImage, defaultImageReference } from "./naming.js";
import { type Project, readProject } from "./project.js";
import { installedSdkProtocol, locateSdk, packSdk } from "./sdk.js";
import { isFile, SDK_TARBALL_NAME, sdkTarballDir, stageManagedBuild } from "./stage.js";
import { lastLines, runTool } from "./subprocess.js";

export interface BuildOptions {
  /** the app's folder: its package.json holds the "ociapp" configuration */
  projectRoot: string;
  /** where <name>-<version>.ociapp is written; the project root by default */
  outputDir?: string;
  /** buildx --network for RUN steps (e.g. "host"); the engine's default when unset */
  network?: string;
  /** overrides the config's baseImage and the default node:<host Node major>-bookworm-slim */
  baseImage?: string;
  noCache?: boolean;
  /** what reaches onProgress: "auto" and "plain" forward buildx's plain progress, "quiet" nothing. Default "quiet". */
  progress?: "auto" | "plain" | "quiet";
  /** layer compression; gzip by default */
  compression?: "gzip" | "zstd";
  /** the image reference recorded in the artifact (what `docker load` names it); <name>:<version> by default */
  image?: string;
  signal?: AbortSignal;
  onProgress?: (chunk: string) => void;
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
}

const PROGRESS = ["auto", "plain", "quiet"] as const;
const COMPRESSION = ["gzip", "zstd"] as const;
const IMAGE_REFERENCE = /^[a-z0-9][a-z0-9._\-/:]*$/;
const NETWORK = /^[A-Za-z0-9][\w.:-]*$/;

/**
 * Packages the app at `projectRoot` into an OCI image-layout tarball with docker buildx. The artifact
 * appears only once complete: buildx writes a temporary file beside it, which is renamed into place.
 */
export async function build(options: BuildOptions): Promise<BuildResult> {
  const opts = validateOptions(options);
  const { signal } = opts;
  if (signal?.aborted) {
    throw new BuildError("OCIAPP_BUILD_ABORTED", "build aborted", { cause: signal.reason });
  }
  const say = (line: string) => {
    if (opts.progress !== "quiet") opts.onProgress?.(`[ociapp-build] ${line}\n`);
  };

  const project = await readProject(opts.projectRoot);
  const { config, packageJson } = project;
  const baseImage = opts.baseImage ?? config.baseImage ?? defaultBaseImage();
  const customContainerfile =
    config.mode === "custom" ? resolve(project.root, config.containerfile) : undefined;
  if (customContainerfile && !(await isFile(customContainerfile))) {
    throw new BuildError(
      "OCIAPP_BUILD_CONTAINERFILE_MISSING",
      `ociapp.containerfile ${quote(config.mode === "custom" ? config.containerfile : "")} does not exist in ${project.root}`,
    );
  }
  await checkBuildx({ signal, env: opts.env });

  const outputDir = resolve(opts.outputDir ?? project.root);
  await mkdir(outputDir, { recursive: true }).catch((error: NodeJS.ErrnoException) => {
    throw new BuildError(
      "OCIAPP_BUILD_INVALID_OPTION",
      `invalid outputDir ${JSON.stringify(outputDir)}: cannot create it (${error.code ?? error.message})`,
      { cause: error },
    );
  });
  const finalPath = join(outputDir, artifactFileName(packageJson.name, packageJson.version));
  const tempPath = `${finalPath}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  const image = opts.image ?? defaultImageReference(packageJson.name, packageJson.version);
  const stagingDir = await mkdtemp(join(tmpdir(), "ociapp-build-"));

  try {
    let context = project.root;
    let containerfile = customContainerfile ?? "";
    const buildArgs: Record<string, string> = {};
    // The wire protocol of the SDK in the image, for dev.ociapp.protocol: the packed SDK's (managed),
    // or the project's installed one (custom; none recorded when it has none).
    let protocol: number | undefined;
    if (config.mode === "managed") {
      const sdk = await locateSdk(project.root);
      protocol = sdk.protocol;
      // Packing the SDK does not depend on the app's build: both run at once.
      const [built, packed] = await Promise.allSettled([
        runBuildScript(project, opts, say),
        packSdk(sdk, await sdkTarballDir(stagingDir), SDK_TARBALL_NAME, signal),
      ]);
      if (built.status === "rejected") throw built.reason;
      if (packed.status === "rejected") throw packed.reason;
      say("staging the build context");
      containerfile = await stageManagedBuild(project, config, stagingDir, { baseImage, signal });
      context = stagingDir;
    } else {
      // A custom Containerfile may use `ARG OCIAPP_BASE_IMAGE` / `FROM ${OCIAPP_BASE_IMAGE}`.
      buildArgs.OCIAPP_BASE_IMAGE = baseImage;
      protocol = await installedSdkProtocol(project.root);
    }

    const annotations: Record<string, string> = {
      "org.opencontainers.image.title": packageJson.name,
      "org.opencontainers.image.version": packageJson.version,
    };
    if (config.entrypoint !== undefined) annotations["dev.ociapp.entrypoint"] = config.entrypoint;
    if (protocol !== undefined) annotations[PROTOCOL_ANNOTATION] = String(protocol);

    say(`building ${image} from ${printable(config.mode === "managed" ? baseImage : containerfile)}`);
    await runBuildx({
      context,
      containerfile,
      dest: tempPath,
      image,
      annotations,
      buildArgs,
      compression: opts.compression,
      network: opts.network,
      noCache: opts.noCache,
      signal,
      env: opts.env,
      onProgress: opts.progress === "quiet" ? undefined : opts.onProgress,
    });

    let digest: string;
    try {
      digest = (await readArtifactIndex(tempPath, signal ? { signal } : {})).digest;
    } catch (error) {
      if (!(error instanceof ArtifactFormatError || error instanceof ArtifactFileError)) throw error;
      throw new BuildError("OCIAPP_BUILD_FAILED", `buildx wrote an unreadable artifact: ${error.message}`, {
        cause: error,
      });
    }
    const { size } = await stat(tempPath);
    signal?.throwIfAborted();
    await rename(tempPath, finalPath);
    return { path: finalPath, bytes: size, digest, image };
  } catch (error) {
    if (signal?.aborted && !(error instanceof BuildError && error.code === "OCIAPP_BUILD_ABORTED")) {
      throw new BuildError("OCIAPP_BUILD_ABORTED", "build aborted", { cause: signal.reason });
    }
    throw error;
  } finally {
    await rm(tempPath, { force: true });
    await rm(stagingDir, { recursive: true, force: true });
  }
}

async function runBuildScript(
  project: Project,
  opts: ValidOptions,
  say: (line: string) => void,
): Promise<void> {
  if (typeof project.packageJson.scripts?.build !== "string") return;
  say("running the app's build script (npm run build)");
  const result = await runTool(
    "npm",
    ["run", "build"],
    {
      cwd: project.root,
      signal: opts.signal,
      env: opts.env,
      onOutput: opts.progress === "quiet" ? undefined : opts.onProgress,
    },
    { code: "OCIAPP_BUILD_SCRIPT_FAILED", message: "npm not found on PATH: it runs the app's build script" },
  );
  if (result.exitCode !== 0) {
    throw new BuildError(
      "OCIAPP_BUILD_SCRIPT_FAILED",
      `the app's build script failed (npm run build exited with ${result.exitCode}) in ${project.root}`,
      { output: lastLines(result.tail, 30) },
    );
  }
}

interface ValidOptions {
  projectRoot: string;
  outputDir: string | undefined;
  network: string | undefined;
  baseImage: string | undefined;
  noCache: boolean;
  progress: (typeof PROGRESS)[number];
  compression: (typeof COMPRESSION)[number];
  image: string | undefined;
  signal: AbortSignal | undefined;
  onProgress: ((chunk: string) => void) | undefined;
  env: Record<string, string | undefined> | undefined;
}

function validateOptions(options: BuildOptions): ValidOptions {
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
  if (options.onProgress !== undefined && typeof options.onProgress !== "function") {
    throw invalid("onProgress", typeof options.onProgress, "a function");
  }
  return {
    projectRoot: options.projectRoot,
    outputDir: options.outputDir,
    network: options.network,
    baseImage: options.baseImage,
    noCache: options.noCache === true,
    progress,
    compression,
    image: options.image,
    signal: options.signal,
    onProgress: options.onProgress,
    env: options.env,
  };
}
