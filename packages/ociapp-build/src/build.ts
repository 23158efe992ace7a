import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rename, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, normalize, resolve } from "node:path";
import {
  ArtifactFileError,
  ArtifactFormatError,
  PROTOCOL_ANNOTATION,
  printable,
  quote,
  readArtifactIndex,
  runtimeDefaultsAnnotations,
} from "ociapp/artifact";
import { checkBuildx, runBuildx } from "./buildx.js";
import { type EntryChoice, stageBundle } from "./bundle.js";
import { type ManagedConfig, splitEntrypoint } from "./config.js";
import { CONTEXT_ANNOTATION, contextDigest, reusableArtifact } from "./context-digest.js";
import { checkCustomImage } from "./custom-check.js";
import { BuildError } from "./errors.js";
import { artifactFileName, defaultBaseImage, defaultImageReference } from "./naming.js";
import { findHostNodeHeaders, inspectBaseImage } from "./node-headers.js";
import {
  type BuildOptions,
  type BuildResult,
  toolVersion,
  type ValidOptions,
  validateOptions,
} from "./options.js";
import { type BuildPhase, phaseOf, WriteWatcher } from "./phases.js";
import type { BuildxEvent } from "./progress-log.js";
import { type Project, readProject } from "./project.js";
import { installedSdkProtocol, locateSdk, packSdk, sdkHasCheck } from "./sdk.js";
import { isFile, SDK_TARBALL_NAME, sdkTarballDir, stageManagedBuild } from "./stage.js";
import { lastLines, runTool } from "./subprocess.js";

export type { BuildOptions, BuildResult } from "./options.js";

/** What buildx is given, whichever the mode. */
interface Plan {
  context: string;
  containerfile: string;
  buildArgs: Record<string, string>;
  buildContexts: Record<string, string>;
  annotations: Record<string, string>;
  native: string[];
  entry: EntryChoice;
}

/**
 * Packages the app at `projectRoot` into an OCI image-layout tarball with docker buildx. The artifact
 * appears only once complete: buildx writes a temporary file beside it, which is renamed into place.
 * A managed build whose context (staged files, rendered Containerfile, base image ID, options) is the
 * one the existing artifact records keeps that artifact without running buildx (`reused: true`;
 * `noCache` always builds). Rejects with BuildError (see errors.ts for the codes).
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
    let plan: Plan;
    if (config.mode === "managed") {
      const prepared = await prepareManaged(project, config, opts, {
        baseImage,
        image,
        finalPath,
        stagingDir,
        say,
      });
      if ("reused" in prepared) return prepared.reused;
      plan = prepared;
    } else {
      await checkBuildx({ signal, env: opts.env });
      plan = {
        context: project.root,
        containerfile: customContainerfile ?? "",
        // A custom Containerfile may use `ARG OCIAPP_BASE_IMAGE` / `FROM ${OCIAPP_BASE_IMAGE}`.
        buildArgs: { OCIAPP_BASE_IMAGE: baseImage },
        buildContexts: {},
        annotations: annotationsFor(project, await installedSdkProtocol(project.root)),
        native: [],
        entry: { bundled: false, note: "custom Containerfile: the image runs its own entrypoint" },
      };
    }

    say(`building ${image} from ${printable(config.mode === "managed" ? baseImage : plan.containerfile)}`);
    const onEvent = await phaseEvents(opts, finalPath, tempPath);
    try {
      await runBuildx({
        context: plan.context,
        containerfile: plan.containerfile,
        output: {
          type: "oci",
          dest: tempPath,
          image,
          annotations: plan.annotations,
          compression: opts.compression,
        },
        buildArgs: plan.buildArgs,
        buildContexts: plan.buildContexts,
        network: opts.network,
        noCache: opts.noCache,
        signal,
        env: opts.env,
        onProgress: opts.progress === "quiet" ? undefined : opts.onProgress,
        onEvent: onEvent.handle,
      });
    } catch (error) {
      throw explainNativeFailure(error, plan.native);
    } finally {
      onEvent.stop();
    }

    let digest: string;
    try {
      digest = (await readArtifactIndex(tempPath, signal ? { signal } : {})).digest;
    } catch (error) {
      if (!(error instanceof ArtifactFormatError || error instanceof ArtifactFileError)) throw error;
      throw new BuildError("OCIAPP_BUILD_FAILED", `buildx wrote an unreadable artifact: ${error.message}`, {
        cause: error,
      });
    }
    if (config.mode === "custom") {
      opts.onPhase?.({ phase: "checking" });
      const checked = await checkCustomImage({
        artifact: tempPath,
        digest,
        signal,
        env: opts.env,
        onProgress: opts.progress === "quiet" ? undefined : opts.onProgress,
      });
      if (checked === "not-serve") say("not checking the app: the image does not start `ociapp serve`");
      if (checked === "no-check") say("not checking the app: the image's ociapp SDK has no `ociapp check`");
    }
    const { size } = await stat(tempPath);
    signal?.throwIfAborted();
    await rename(tempPath, finalPath);
    return {
      path: finalPath,
      bytes: size,
      digest,
      image,
      reused: false,
      native: plan.native,
      entry: plan.entry,
    };
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

/**
 * Managed mode up to buildx: the app's build script, the SDK packed, the context staged (two-stage
 * when a dependency has install scripts, with Node's headers found for the base image's Node), the
 * annotations, and the context's digest. Resolves `{ reused }` when the artifact at finalPath records
 * the same digest (then nothing else runs).
 */
async function prepareManaged(
  project: Project,
  config: ManagedConfig,
  opts: ValidOptions,
  where: {
    baseImage: string;
    image: string;
    finalPath: string;
    stagingDir: string;
    say: (line: string) => void;
  },
): Promise<Plan | { reused: BuildResult }> {
  const { signal } = opts;
  const { baseImage, say, stagingDir } = where;
  const sdk = await locateSdk(project.root);
  // None of these depends on another: the app's build, the SDK's packing, asking the SDK whether it
  // has `ociapp check`, and the engine for the base image's ID and Node version.
  const [buildx, built, packed, hasCheck, base] = await Promise.allSettled([
    checkBuildx({ signal, env: opts.env }),
    runBuildScript(project, opts, say),
    packSdk(sdk, await sdkTarballDir(stagingDir), SDK_TARBALL_NAME, signal),
    sdkHasCheck(sdk, signal),
    inspectBaseImage(baseImage, { signal, env: opts.env }),
  ]);
  for (const step of [buildx, built, packed, hasCheck, base]) {
    if (step.status === "rejected") throw step.reason;
  }
  const check = hasCheck.status === "fulfilled" && hasCheck.value;
  const facts = base.status === "fulfilled" ? base.value : { id: undefined, nodeVersion: undefined };
  if (!check) say("the app's ociapp SDK has no `ociapp check`: its entrypoint is not checked in the image");

  say("staging the build context");
  opts.onPhase?.({ phase: "staging" });
  let entry: EntryChoice = { bundled: false, note: "" };
  const staged = await stageManagedBuild(project, config, stagingDir, {
    baseImage,
    check,
    signal,
    bundle: async (installScripts) => {
      entry = await stageBundle({
        enabled: opts.bundle,
        sdkHasHook: sdk.bundledEntry,
        installScripts,
        projectRoot: project.root,
        entryModule: normalize(splitEntrypoint(config.entrypoint).module),
        sdkDir: sdk.dir,
        dependencies: productionDependencies(project),
        stagingDir,
        signal,
      });
      say(entry.note);
      return entry.bundled;
    },
  });
  const native = staged.installScripts;
  const buildContexts: Record<string, string> = {};
  let headers: string = "none";
  if (native.length > 0) {
    // The base image's own headers come first (nodedir.cjs in the image decides, by version); the
    // host's are lent for the image's Node version (its NODE_VERSION), else for the host's own Node,
    // which is what an image without NODE_VERSION made from this machine's node runs (engine.sh's).
    const host = await findHostNodeHeaders(facts.nodeVersion ?? process.versions.node);
    buildContexts["ociapp-node-headers"] = host?.dir ?? staged.emptyDir;
    if (host) headers = `${host.version} ${host.digest}`;
    say(
      `dependencies with install scripts (${native.join(", ")}): compiled in a builder stage${host ? `, with this machine's headers for Node ${host.version} (${host.dir}) unless the image has its own` : ""}`,
    );
  }

  const annotations = annotationsFor(project, sdk.protocol);
  if (facts.id !== undefined) {
    const digest = await contextDigest({
      stagingDir,
      // The rendered Containerfile is an input; the empty folder holds nothing.
      exclude: [],
      toolVersion: toolVersion(),
      baseImage,
      baseImageId: facts.id,
      settings: {
        compression: opts.compression,
        image: where.image,
        annotations: JSON.stringify(annotations),
        headers,
      },
    });
    if (!opts.noCache) {
      const existing = await reusableArtifact(where.finalPath, digest, signal);
      if (existing) {
        say(`build context unchanged (${digest}): reusing ${printable(where.finalPath)}`);
        opts.onPhase?.({ phase: "reused" });
        return {
          reused: { path: where.finalPath, ...existing, image: where.image, reused: true, native, entry },
        };
      }
    }
    annotations[CONTEXT_ANNOTATION] = digest;
  }
  return {
    context: stagingDir,
    containerfile: staged.containerfile,
    buildArgs: {},
    buildContexts,
    annotations,
    native,
    entry,
  };
}

/** What the image installs, by name: the app's dependencies, optional and peer dependencies. */
function productionDependencies(project: Project): Set<string> {
  const names = new Set<string>();
  for (const field of ["dependencies", "optionalDependencies", "peerDependencies"]) {
    const deps = project.packageJson[field];
    if (deps && typeof deps === "object") for (const name of Object.keys(deps)) names.add(name);
  }
  return names;
}

/** The manifest annotations: name, version, entrypoint, and the image's SDK protocol when known. */
function annotationsFor(project: Project, protocol: number | undefined): Record<string, string> {
  const annotations: Record<string, string> = {
    "org.opencontainers.image.title": project.packageJson.name,
    "org.opencontainers.image.version": project.packageJson.version,
  };
  if (project.config.entrypoint !== undefined)
    annotations["dev.ociapp.entrypoint"] = project.config.entrypoint;
  if (protocol !== undefined) annotations[PROTOCOL_ANNOTATION] = String(protocol);
  // The app's own runtime defaults, in ociapp's namespace: a runtime only lowers its limits with them.
  if (project.config.runtime) Object.assign(annotations, runtimeDefaultsAnnotations(project.config.runtime));
  return annotations;
}

/**
 * buildx's events as phases for opts.onPhase, and the size of the file being written once buildx
 * sends the tarball (against the previous artifact's size, when there is one). Nothing without onPhase.
 */
async function phaseEvents(
  opts: ValidOptions,
  finalPath: string,
  tempPath: string,
): Promise<{ handle: ((event: BuildxEvent) => void) | undefined; stop: () => void }> {
  const { onPhase } = opts;
  if (onPhase === undefined) return { handle: undefined, stop: () => undefined };
  const expectedBytes = await stat(finalPath).then(
    (s) => s.size,
    () => undefined,
  );
  const writing = (bytes: number): BuildPhase =>
    expectedBytes === undefined ? { phase: "writing", bytes } : { phase: "writing", bytes, expectedBytes };
  const watcher = new WriteWatcher(tempPath, (bytes) => onPhase(writing(bytes)));
  return {
    handle: (event) => {
      const phase = phaseOf(event);
      if (phase === undefined) return;
      if (phase.phase === "writing") {
        watcher.start();
        onPhase(writing(0));
      } else {
        onPhase(phase);
      }
    },
    stop: () => watcher.stop(),
  };
}

/** A failed builder stage names the dependencies it was compiling. */
function explainNativeFailure(error: unknown, native: string[]): unknown {
  if (
    native.length === 0 ||
    !(error instanceof BuildError) ||
    error.code !== "OCIAPP_BUILD_FAILED" ||
    !error.message.includes("[builder ")
  ) {
    return error;
  }
  return new BuildError(
    "OCIAPP_BUILD_FAILED",
    `${error.message} (compiling dependencies with install scripts: ${native.join(", ")})`,
    { cause: error, ...(error.output === undefined ? {} : { output: error.output }) },
  );
}

async function runBuildScript(
  project: Project,
  opts: ValidOptions,
  say: (line: string) => void,
): Promise<void> {
  if (typeof project.packageJson.scripts?.build !== "string") return;
  say("running the app's build script (npm run build)");
  opts.onPhase?.({ phase: "script" });
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
