/**
 * The image references the runtime owns. Every one is under `ociapp.invalid/`: `.invalid` is a
 * top-level domain reserved by RFC 2606 (section 2), so no registry can serve it and a pull of these
 * names can never succeed; and a first component with a dot is a registry host in the Docker/OCI
 * reference grammar (distribution/reference: domain, path components `[a-z0-9]+([._-][a-z0-9]+)*`,
 * tags `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`), so neither Docker nor Podman prefix it with
 * `docker.io/library/` or `localhost/`.
 *
 * - `ociapp.invalid/artifact:sha256-<hex>`: the image of the artifact whose manifest digest is
 *   `sha256:<hex>`. Tagged only after a load the engine reported complete and whose image identity
 *   checked out, so an image under this name was always loaded completely.
 * - `ociapp.invalid/used:sha256-<hex>-<ms>`: the shared last-used record: a runtime that uses the
 *   image tags it with the wall-clock time (ms since the epoch) and removes the older such tags.
 * - `ociapp.invalid/loading:<ms>-<random>`: a load in progress (the name written into the stream).
 *
 * Artifacts never name anything: the loader replaces their index.json, so their own names
 * (`io.containerd.image.name`, `org.opencontainers.image.ref.name`, a docker-archive manifest.json's
 * RepoTags) never reach the engine.
 */
export const IMAGE_PREFIX = "ociapp.invalid";
export const ARTIFACT_REPOSITORY = `${IMAGE_PREFIX}/artifact`;
export const USED_REPOSITORY = `${IMAGE_PREFIX}/used`;
export const LOADING_REPOSITORY = `${IMAGE_PREFIX}/loading`;

const DIGEST = /^sha256:([a-f0-9]{64})$/;

function hexOf(digest: string): string {
  const match = DIGEST.exec(digest);
  if (!match) throw new TypeError(`not a sha256 digest: ${digest}`);
  return match[1] as string;
}

/** `ociapp.invalid/artifact:sha256-<hex>`: the engine's name for an artifact's image. */
export function artifactReference(digest: string): string {
  return `${ARTIFACT_REPOSITORY}:${artifactTag(digest)}`;
}

export function artifactTag(digest: string): string {
  return `sha256-${hexOf(digest)}`;
}

/** The tag of a last-used record: `sha256-<hex>-<ms since the epoch>`. */
export function usedTag(digest: string, atMs: number): string {
  return `sha256-${hexOf(digest)}-${Math.floor(atMs)}`;
}

export function loadingTag(atMs: number, random: string): string {
  return `${Math.floor(atMs)}-${random}`;
}

export type RuntimeName =
  | { kind: "artifact"; name: string; digest: string }
  | { kind: "used"; name: string; digest: string; at: number }
  | { kind: "loading"; name: string; at: number };

const ARTIFACT_NAME = new RegExp(`^${escapeRegExp(ARTIFACT_REPOSITORY)}:sha256-([a-f0-9]{64})$`);
const USED_NAME = new RegExp(`^${escapeRegExp(USED_REPOSITORY)}:sha256-([a-f0-9]{64})-(\\d{1,15})$`);
const LOADING_NAME = new RegExp(`^${escapeRegExp(LOADING_REPOSITORY)}:(\\d{1,15})-[a-f0-9]{1,64}$`);

/** Reads one of the runtime's names back (from an engine's RepoTags); undefined for any other name. */
export function parseRuntimeName(name: string): RuntimeName | undefined {
  let match = ARTIFACT_NAME.exec(name);
  if (match) return { kind: "artifact", name, digest: `sha256:${match[1]}` };
  match = USED_NAME.exec(name);
  if (match) return { kind: "used", name, digest: `sha256:${match[1]}`, at: Number(match[2]) };
  match = LOADING_NAME.exec(name);
  if (match) return { kind: "loading", name, at: Number(match[1]) };
  return undefined;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}
