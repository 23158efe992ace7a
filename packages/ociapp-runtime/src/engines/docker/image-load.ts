import { randomBytes } from "node:crypto";
import { stat } from "node:fs/promises";
import { openArtifactForLoad } from "../../artifacts/artifact-cache.js";
import { ArtifactError, EngineUnavailableError } from "../../errors.js";
import { createLoadStream, type LoadStreamResult } from "../../images/load-stream.js";
import { LOADING_REPOSITORY, loadingTag } from "../../images/names.js";
import type { LoadImageOptions } from "../engine.js";
import { describe, engineError, statusOf } from "./errors.js";
import {
  artifactRepoTag,
  type ImageContext,
  inspectImage,
  markUsed,
  removeName,
  tagImage,
} from "./images.js";
import { destroy, onJsonLines } from "./streams.js";

/** How long a load may go without a byte sent or received before it is given up. */
export const LOAD_IDLE_TIMEOUT_MS = 120_000;
/** Bound on removing what a failed load left (it runs even after the caller gave up). */
const CLEANUP_TIMEOUT_MS = 30_000;

/**
 * Loads an artifact under the runtime's names:
 *
 * 1. The artifact streams to `POST /images/load` rewritten (images/load-stream.ts): its blobs, each
 *    checked against its digest and measured against `maxUnpackedBytes`, then the runtime's own
 *    index.json naming the image `ociapp.invalid/loading:<ms>-<random>` (plus a docker-archive
 *    manifest.json where the engine's loader needs one: the classic store).
 * 2. The engine must report success (a "Loaded image" line, no error), and the image under the
 *    loading name must have the identity the artifact gives it: the manifest digest as image ID on
 *    the containerd store, the config digest (read from the verified manifest) elsewhere.
 * 3. Only then is it tagged: first the last-used record, then `ociapp.invalid/artifact:sha256-<hex>`,
 *    the name containers are created from. So an image under that name was always loaded completely.
 * 4. The loading name is removed, whatever happened: after a failure that is the image record a
 *    half-done load left (the containerd store keeps one when unpacking fails).
 *
 * A load that stops making progress (no byte sent or received) for LOAD_IDLE_TIMEOUT_MS is given up.
 * Rejects with ArtifactError (the file, its budget, or the engine refused it) or EngineUnavailableError.
 */
export async function loadArtifact(
  context: ImageContext,
  path: string,
  digest: string,
  options: LoadImageOptions,
): Promise<void> {
  const loadingName = `${LOADING_REPOSITORY}:${loadingTag(Date.now(), randomBytes(8).toString("hex"))}`;
  const idle = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const progress = () => {
    clearTimeout(timer);
    timer = setTimeout(
      () =>
        idle.abort(
          new EngineUnavailableError(
            `${context.where} made no progress loading ${path} for ${LOAD_IDLE_TIMEOUT_MS} ms`,
          ),
        ),
      LOAD_IDLE_TIMEOUT_MS,
    );
  };
  const signal = options.signal ? AbortSignal.any([options.signal, idle.signal]) : idle.signal;
  progress();
  try {
    const loaded = await streamArtifact(context, path, digest, loadingName, options, signal, progress);
    clearTimeout(timer);
    const expected = context.flavour.imageIdIsManifestDigest ? digest : loaded.configDigest;
    const info = await inspectImage(context, loadingName, signal);
    if (!info) {
      throw new ArtifactError(
        path,
        `${context.where} reported loading ${path} but holds no image under ${loadingName}`,
      );
    }
    if (info.Id !== expected) {
      throw new ArtifactError(
        path,
        `${context.where} loaded ${path} as image ${info.Id ?? "(no ID)"}, not ${expected} as its manifest says`,
      );
    }
    await markUsed(context, digest, signal, loadingName);
    const { repo, tag } = artifactRepoTag(digest);
    await tagImage(context, loadingName, repo, tag, signal);
  } finally {
    clearTimeout(timer);
    await removeName(context, loadingName, AbortSignal.timeout(CLEANUP_TIMEOUT_MS)).catch(() => undefined);
  }
}

/** Streams the rewritten artifact and reads the engine's answer; the first failure wins. */
async function streamArtifact(
  context: ImageContext,
  path: string,
  digest: string,
  loadingName: string,
  options: LoadImageOptions,
  signal: AbortSignal,
  progress: () => void,
): Promise<LoadStreamResult> {
  signal.throwIfAborted();
  const onProgress = options.onProgress;
  // The size for progress is asked before the file is opened: a 'data' listener sets the stream
  // flowing, so any await between the first listener and the pipe into the rewrite below would let
  // chunks go by that the rewrite never sees (a busy machine lost the tar's first 64 KiB that way).
  const total = onProgress
    ? await stat(path).then(
        (info) => info.size,
        () => 0,
      )
    : 0;
  // Only a regular file, never waited on, read through the handle that was checked.
  const file = await openArtifactForLoad(path, signal);
  file.on("data", progress);
  if (onProgress) {
    let sent = 0;
    let reported = 0;
    file.on("data", (chunk: Buffer | string) => {
      sent += chunk.length;
      const now = performance.now();
      if (now - reported >= 250) {
        reported = now;
        onProgress(sent, total);
      }
    });
    file.on("end", () => onProgress(sent, total));
  }
  const { stream, result } = createLoadStream(file, {
    path,
    manifestDigest: digest,
    imageName: loadingName,
    dockerArchive: context.flavour.dockerArchiveManifest,
    maxUnpackedBytes: options.maxUnpackedBytes,
  });
  // The artifact's own failure (budget, digest) is the one to report, even when the engine then
  // fails on the truncated upload: keep it aside, and end the request with it.
  const request = new AbortController();
  let artifactFailure: ArtifactError | undefined;
  result.catch((error: ArtifactError) => {
    artifactFailure = error;
    request.abort(error);
  });
  const onAbort = () => {
    stream.destroy();
    file.destroy();
    request.abort(signal.reason);
  };
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    let response: NodeJS.ReadableStream;
    try {
      response = (await context.docker.loadImage(stream, {
        quiet: true,
        abortSignal: request.signal,
      })) as NodeJS.ReadableStream;
    } catch (error) {
      // An abort destroys the stream too: the caller's reason, not the stream's, is the answer.
      if (signal.aborted) throw abortError(signal, path, context.where);
      if (artifactFailure) throw artifactFailure;
      if (statusOf(error) !== undefined) {
        throw new ArtifactError(path, `the engine refused to load ${path}: ${describe(error)}`, {
          cause: error,
        });
      }
      throw engineError(`load ${path}`, error, context.where);
    }
    response.on("data", progress);
    const answer = await readAnswer(response, request.signal).catch((error: unknown) => {
      destroy(response);
      if (signal.aborted) throw abortError(signal, path, context.where);
      if (artifactFailure) throw artifactFailure;
      throw engineError(`load ${path}`, error, context.where);
    });
    if (answer.error) {
      // An engine may stop reading and answer before the body ended: the rewrite's own failure, if
      // it had one, says more.
      if (artifactFailure) throw artifactFailure;
      throw new ArtifactError(path, `the engine could not load ${path}: ${answer.error}`);
    }
    // The engine answered success after reading the whole body, so the rewrite has settled.
    const loaded = await result;
    if (!answer.loaded) {
      throw new ArtifactError(path, `the engine's answer to loading ${path} reported no loaded image`);
    }
    return loaded;
  } catch (error) {
    stream.destroy();
    file.destroy();
    throw error;
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/** The load answer: JSON lines; `{"stream":"Loaded image: ..."}` on success, `errorDetail` on failure. */
function readAnswer(
  response: NodeJS.ReadableStream,
  signal: AbortSignal,
): Promise<{ error?: string; loaded: boolean }> {
  return new Promise((resolve, reject) => {
    let error: string | undefined;
    let loaded = false;
    onJsonLines(response, (value) => {
      const line = value as { error?: string; errorDetail?: { message?: string }; stream?: string };
      if (line.error || line.errorDetail) error = line.errorDetail?.message ?? line.error;
      if (typeof line.stream === "string" && line.stream.startsWith("Loaded image")) loaded = true;
    });
    response.on("end", () => resolve(error === undefined ? { loaded } : { error, loaded }));
    response.on("error", reject);
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    response.on("close", () => signal.removeEventListener("abort", onAbort));
  });
}

function abortError(signal: AbortSignal, path: string, where: string): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof EngineUnavailableError || reason instanceof ArtifactError) return reason;
  return new EngineUnavailableError(`${where} did not load ${path} in time`, { cause: reason });
}
