import { createReadStream } from "node:fs";
import type Dockerode from "dockerode";
import { ArtifactError, EngineUnavailableError } from "../../errors.js";
import { describe, engineError, statusOf, untilAborted } from "./errors.js";
import { onJsonLines } from "./streams.js";

/** How long a load may go without a byte sent or received before it is given up. */
export const LOAD_IDLE_TIMEOUT_MS = 120_000;

/**
 * Streams an image tarball to `POST /images/load`. A load that stops making progress (no file bytes
 * sent, no answer bytes received) for LOAD_IDLE_TIMEOUT_MS is given up: a wedged engine must not
 * hold the first call forever. Rejects with ArtifactError (the engine refused the file) or
 * EngineUnavailableError.
 */
export async function loadImage(
  docker: Dockerode,
  path: string,
  signal: AbortSignal | undefined,
  where: string,
): Promise<void> {
  const idle = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const progress = () => {
    clearTimeout(timer);
    timer = setTimeout(
      () =>
        idle.abort(
          new EngineUnavailableError(
            `${where} made no progress loading ${path} for ${LOAD_IDLE_TIMEOUT_MS} ms`,
          ),
        ),
      LOAD_IDLE_TIMEOUT_MS,
    );
  };
  const abortSignal = signal ? AbortSignal.any([signal, idle.signal]) : idle.signal;
  progress();
  try {
    return await untilAborted(
      streamImage(docker, path, abortSignal, progress, where),
      abortSignal,
      `load ${path}`,
    );
  } finally {
    clearTimeout(timer);
  }
}

async function streamImage(
  docker: Dockerode,
  path: string,
  signal: AbortSignal,
  progress: () => void,
  where: string,
): Promise<void> {
  const file = createReadStream(path);
  file.on("data", progress);
  signal.addEventListener("abort", () => file.destroy(), { once: true });
  let response: NodeJS.ReadableStream;
  try {
    response = (await docker.loadImage(file, { quiet: true, abortSignal: signal })) as NodeJS.ReadableStream;
    response.on("data", progress);
  } catch (error) {
    file.destroy();
    if (statusOf(error) !== undefined) {
      throw new ArtifactError(path, `the engine refused to load ${path}: ${describe(error)}`, {
        cause: error,
      });
    }
    throw engineError(`load ${path}`, error, where);
  }
  const failure = await new Promise<string | undefined>((resolve, reject) => {
    let message: string | undefined;
    onJsonLines(response, (value) => {
      const line = value as { error?: string; errorDetail?: { message?: string } };
      if (line.error || line.errorDetail) message = line.errorDetail?.message ?? line.error;
    });
    response.on("end", () => resolve(message));
    response.on("error", reject);
    file.on("error", reject);
  }).catch((error: unknown) => {
    file.destroy();
    const code = (error as NodeJS.ErrnoException).code;
    throw code === "ENOENT" || code === "EISDIR"
      ? new ArtifactError(path, `cannot read ${path}: ${describe(error)}`, { cause: error })
      : engineError(`load ${path}`, error, where);
  });
  if (failure) throw new ArtifactError(path, `the engine could not load ${path}: ${failure}`);
}
