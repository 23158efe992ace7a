import { printable } from "ociapp/artifact";
import { BuildError } from "./errors.js";
import { type BuildFailure, ProgressLog } from "./progress-log.js";
import { lastLines, runTool } from "./subprocess.js";

export interface BuildxOptions {
  context: string;
  containerfile: string;
  /** the OCI tarball to write */
  dest: string;
  /** the image reference recorded in index.json (what `docker load` names the image) */
  image: string;
  annotations: Record<string, string>;
  compression: "gzip" | "zstd";
  network?: string | undefined;
  noCache?: boolean | undefined;
  buildArgs?: Record<string, string>;
  signal?: AbortSignal | undefined;
  /** buildx's plain progress output, as it arrives */
  onProgress?: ((chunk: string) => void) | undefined;
  /** environment for the docker CLI (PATH, DOCKER_HOST, ...) */
  env?: Record<string, string | undefined> | undefined;
}

const DOCKER_MISSING =
  "docker not found on PATH: install the Docker CLI and engine (https://docs.docker.com/engine/install/)";
const ENGINE_DOWN = /Cannot connect to the Docker daemon|error during connect|Is the docker daemon running/i;
const NO_OCI_EXPORTER = /OCI exporter is not supported|exporter "oci" is not supported/i;

/** Fails with one clear line when the docker CLI or its buildx plugin is missing. */
export async function checkBuildx(options: { signal?: AbortSignal | undefined; env?: BuildxOptions["env"] }) {
  const result = await runTool(
    "docker",
    ["buildx", "version"],
    { signal: options.signal, env: options.env },
    { code: "OCIAPP_BUILD_DOCKER_NOT_FOUND", message: DOCKER_MISSING },
  );
  if (result.exitCode !== 0) {
    const said = result.tail.trim().split("\n")[0]?.trim() ?? "";
    throw new BuildError(
      "OCIAPP_BUILD_BUILDX_MISSING",
      `docker buildx is not available (${said}): install the buildx plugin (Debian/Ubuntu: docker-buildx; Docker's repository: docker-buildx-plugin)`,
    );
  }
}

/** Runs `docker buildx build` to an OCI image-layout tarball at `dest`. */
export async function runBuildx(options: BuildxOptions): Promise<void> {
  const output = csv([
    "type=oci",
    `name=${options.image}`,
    `dest=${options.dest}`,
    "tar=true",
    `compression=${options.compression}`,
  ]);
  const args = [
    "buildx",
    "build",
    // Always plain: the output is parsed to report a failing step (buildx's TTY view cannot be).
    "--progress",
    "plain",
    "--provenance=false",
    "--sbom=false",
    "--file",
    options.containerfile,
    "--output",
    output,
  ];
  for (const [key, value] of Object.entries(options.annotations))
    args.push("--annotation", `manifest:${key}=${value}`);
  for (const [key, value] of Object.entries(options.buildArgs ?? {}))
    args.push("--build-arg", `${key}=${value}`);
  if (options.network !== undefined) args.push("--network", options.network);
  if (options.noCache) args.push("--no-cache");
  args.push(options.context);

  const log = new ProgressLog();
  const result = await runTool(
    "docker",
    args,
    {
      signal: options.signal,
      // buildx cancels the build in the engine on SIGINT; on SIGTERM it exits and the engine carries on
      // running the step to its end.
      killSignal: "SIGINT",
      env: options.env,
      onOutput: (chunk) => {
        log.push(chunk);
        options.onProgress?.(chunk);
      },
    },
    { code: "OCIAPP_BUILD_DOCKER_NOT_FOUND", message: DOCKER_MISSING },
  );
  if (result.exitCode === 0) return;

  throw describeFailure(log.failure(), result.tail);
}

/** Turns a failed buildx run into the one-line BuildError a user can act on. */
export function describeFailure(reported: BuildFailure, output: string): BuildError {
  const tail = lastLines(output, 20);
  // The step's name and error are the project's text (a Containerfile line, what a RUN printed): the
  // message shows them escaped, one line whatever they hold.
  const failure = {
    ...reported,
    error: printable(reported.error),
    ...(reported.step === undefined ? {} : { step: printable(reported.step) }),
  };
  // A failed step's output could mention anything: only a build that failed outside any step can be
  // an unreachable engine.
  if (!failure.step && ENGINE_DOWN.test(output)) {
    return new BuildError(
      "OCIAPP_BUILD_ENGINE_UNAVAILABLE",
      `the Docker engine is not reachable (${lastLines(failure.error, 1)}): start it, or point DOCKER_HOST at one`,
      { output: tail },
    );
  }
  if (NO_OCI_EXPORTER.test(output)) {
    return new BuildError(
      "OCIAPP_BUILD_FAILED",
      'buildx cannot export OCI tarballs with this builder: enable the containerd image store ({"features":{"containerd-snapshotter":true}} in daemon.json) or use a docker-container builder (docker buildx create --use)',
      { output: tail },
    );
  }
  const missingImage = failure.step?.match(/^\[internal\] load metadata for (\S+)$/);
  if (missingImage) {
    return new BuildError(
      "OCIAPP_BUILD_FAILED",
      `base image ${missingImage[1]} is not in the engine and could not be pulled (${failure.error}): pull or load it first, or choose another with baseImage / --base-image`,
    );
  }
  const where = failure.step ? ` at ${failure.step}` : "";
  return new BuildError("OCIAPP_BUILD_FAILED", `image build failed${where}: ${failure.error}`, {
    output: failure.output || tail,
  });
}

/**
 * buildx parses --output as one CSV record (Go's encoding/csv, RFC 4180): quote fields that hold a
 * comma, a quote or a line break. An unquoted line break ends the record: a dest with a newline (an
 * output folder named so) was cut there, and buildx wrote the artifact over whatever that named.
 */
export function csv(fields: string[]): string {
  return fields.map((field) => (/[",\r\n]/.test(field) ? `"${field.replace(/"/g, '""')}"` : field)).join(",");
}
