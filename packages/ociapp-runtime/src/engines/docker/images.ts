import type Dockerode from "dockerode";
import {
  ARTIFACT_REPOSITORY,
  artifactReference,
  artifactTag,
  IMAGE_PREFIX,
  parseRuntimeName,
  USED_REPOSITORY,
  usedTag,
} from "../../images/names.js";
import type { EngineImage } from "../engine.js";
import { engineError, statusOf, untilAborted } from "./errors.js";
import type { EngineFlavour } from "./flavour.js";

/**
 * The runtime's image names on a Docker-API engine (Docker with either image store, Podman): lookup,
 * the shared last-used record, listing and removal. Every call names one image reference; nothing
 * here touches a name outside `ociapp.invalid/` (images/names.ts).
 */
export interface ImageContext {
  docker: Dockerode;
  where: string;
  flavour: EngineFlavour;
}

interface InspectInfo {
  Id?: string;
  RepoTags?: string[] | null;
  RepoDigests?: string[] | null;
}

/** `GET /images/{name}/json`; undefined on 404. */
export async function inspectImage(
  context: Pick<ImageContext, "docker" | "where">,
  name: string,
  signal?: AbortSignal,
): Promise<InspectInfo | undefined> {
  try {
    const info = (await untilAborted(
      context.docker.getImage(name).inspect(),
      signal,
      `inspect image ${name}`,
    )) as InspectInfo;
    signal?.throwIfAborted();
    return info;
  } catch (error) {
    if (statusOf(error) === 404) return undefined;
    throw engineError(`inspect image ${name}`, error, context.where);
  }
}

/**
 * Whether an inspect answer (undefined: 404) shows the artifact: the reference exists and, where the
 * engine shows the manifest digest, points at that artifact: the image ID on the containerd store,
 * RepoDigests on Podman (the classic store shows neither; there the name, which only a verified load
 * creates, is trusted).
 */
export function holdsArtifact(
  flavour: EngineFlavour,
  info: InspectInfo | undefined,
  digest: string,
): boolean {
  if (!info) return false;
  if (flavour.store === "containerd") return info.Id === digest;
  if (flavour.store === "podman") {
    return (info.RepoDigests ?? []).some((entry) => entry.endsWith(`@${digest}`));
  }
  return true;
}

/** `POST /images/{source}/tag`: adds `repo:tag` to the image `source` names. */
export async function tagImage(
  context: ImageContext,
  source: string,
  repo: string,
  tag: string,
  signal?: AbortSignal,
): Promise<void> {
  try {
    await untilAborted(
      context.docker.getImage(source).tag({ repo, tag, abortSignal: signal }),
      signal,
      `tag ${source}`,
    );
  } catch (error) {
    throw engineError(`tag ${source} as ${repo}:${tag}`, error, context.where);
  }
}

/**
 * `DELETE /images/{name}` without force: removes that name only (the image too when it was its last
 * name). Resolves "gone" (404 included) or "in-use" (409: a container uses the image).
 */
export async function removeName(
  context: ImageContext,
  name: string,
  signal?: AbortSignal,
): Promise<"gone" | "in-use"> {
  if (!parseRuntimeName(name)) throw new TypeError(`not a runtime-owned image name: ${name}`);
  try {
    await untilAborted(
      context.docker.getImage(name).remove({ force: false, abortSignal: signal }),
      signal,
      `remove ${name}`,
    );
    return "gone";
  } catch (error) {
    const status = statusOf(error);
    if (status === 404) return "gone";
    if (status === 409) return "in-use";
    throw engineError(`remove image name ${name}`, error, context.where);
  }
}

/**
 * The shared last-used record: tags the image `ociapp.invalid/used:sha256-<hex>-<now ms>` (from
 * `source`, the artifact's reference by default), then removes that artifact's older records. A tag
 * holds the time because the engines keep none a runtime could refresh: Podman reports
 * `Metadata.LastTagTime` as 0001-01-01, and the containerd store leaves it unchanged when an image is
 * tagged again with a name it already has (measured, docs/engines.md). Resolves quietly when the
 * image is gone.
 */
export async function markUsed(
  context: ImageContext,
  digest: string,
  signal?: AbortSignal,
  source = artifactReference(digest),
): Promise<void> {
  const now = Date.now();
  try {
    await tagImage(context, source, USED_REPOSITORY, usedTag(digest, now), signal);
  } catch (error) {
    if (statusOf((error as Error).cause) === 404) return;
    throw error;
  }
  const info = await inspectImage(context, source, signal);
  for (const name of info?.RepoTags ?? []) {
    const parsed = parseRuntimeName(name);
    if (parsed?.kind === "used" && parsed.digest === digest && parsed.at < now) {
      await removeName(context, name, signal);
    }
  }
}

interface ListedImage {
  Id: string;
  RepoTags?: string[] | null;
  Size?: number;
}

/**
 * The images carrying a runtime-owned name (`GET /images/json` filtered by reference
 * `ociapp.invalid/*`), each with whether a container uses it (`GET /containers/json?all=1`,
 * `ImageID`: the same ID space as the image list on each store).
 */
export async function listRuntimeImages(context: ImageContext, signal?: AbortSignal): Promise<EngineImage[]> {
  let images: ListedImage[];
  let containers: { ImageID?: string }[];
  try {
    images = (await untilAborted(
      context.docker.listImages({ filters: { reference: [`${IMAGE_PREFIX}/*`] }, abortSignal: signal }),
      signal,
      "list images",
    )) as ListedImage[];
    containers = await untilAborted(
      context.docker.listContainers({ all: true, abortSignal: signal }),
      signal,
      "list containers",
    );
  } catch (error) {
    throw engineError("list images", error, context.where);
  }
  const used = new Set(containers.map((container) => container.ImageID));
  const result: EngineImage[] = [];
  for (const image of images) {
    const names: string[] = [];
    const artifacts = new Set<string>();
    let lastUsed = 0;
    for (const name of image.RepoTags ?? []) {
      const parsed = parseRuntimeName(name);
      if (!parsed) continue;
      names.push(name);
      if (parsed.kind !== "loading") artifacts.add(parsed.digest);
      if (parsed.kind === "used") lastUsed = Math.max(lastUsed, parsed.at);
    }
    if (names.length === 0) continue;
    result.push({
      id: image.Id,
      names,
      artifacts: [...artifacts],
      size: Math.max(0, image.Size ?? 0),
      lastUsed,
      inUse: used.has(image.Id),
    });
  }
  return result;
}

/** The final reference's repository and tag, for `POST /images/{name}/tag`. */
export function artifactRepoTag(digest: string): { repo: string; tag: string } {
  return { repo: ARTIFACT_REPOSITORY, tag: artifactTag(digest) };
}
