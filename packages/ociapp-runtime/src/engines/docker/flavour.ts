import { EngineUnavailableError } from "../../errors.js";

/**
 * Which Docker-API engine answers, and how its image store behaves (measured: docs/engines.md,
 * "Loading an OCI archive"):
 *
 * | store        | loader reads                         | image ID of a loaded artifact | names it from              |
 * |--------------|--------------------------------------|-------------------------------|----------------------------|
 * | `containerd` | index.json (OCI layout)              | manifest digest               | `io.containerd.image.name` |
 * | `classic`    | manifest.json (docker-archive) only  | config digest                 | manifest.json `RepoTags`   |
 * | `podman`     | index.json (OCI layout)              | config digest                 | `io.containerd.image.name` |
 */
export type ImageStore = "containerd" | "classic" | "podman";

export interface EngineFlavour {
  store: ImageStore;
  /** "Docker Engine 26.1.5+dfsg1" or "Podman 4.3.1": for messages. */
  product: string;
  /** The image ID the engine gives a loaded artifact is its manifest digest (else its config digest). */
  imageIdIsManifestDigest: boolean;
  /** The loader needs a docker-archive manifest.json appended to the OCI layout. */
  dockerArchiveManifest: boolean;
  /**
   * What the events endpoint's `event` filter calls a container's exit. Podman 4 matches the filter
   * against its own status name, "died", though the events it sends say "Action": "die"
   * (docs/engines.md, Podman).
   */
  dieEventFilter: "die" | "died";
}

/** What `GET /info` and `GET /version` say that matters here (Docker Engine API; Podman's compat API). */
export interface EngineFacts {
  info: { ServerVersion?: string; DriverStatus?: [string, string][] | null };
  version: { Version?: string; Components?: { Name?: string; Version?: string }[] | null };
}

const MIN_DOCKER_MAJOR = 25;
const MIN_PODMAN_MAJOR = 4;

/**
 * Podman names itself in `/version`'s Components ("Podman Engine"); Docker's containerd image store
 * shows `driver-type io.containerd.snapshotter.v1` in `/info`'s DriverStatus. Rejects engines too old
 * to run the runtime's containers with EngineUnavailableError.
 */
export function detectFlavour(facts: EngineFacts, where: string): EngineFlavour {
  const components = facts.version.Components ?? [];
  const podman = components.find((component) => component.Name === "Podman Engine");
  if (podman) {
    const version =
      podman.Version ?? facts.version.Version ?? facts.info.ServerVersion ?? "(unknown version)";
    if (!(majorOf(version) >= MIN_PODMAN_MAJOR)) {
      throw new EngineUnavailableError(
        `Podman ${version} at ${where} is too old: ociapp-runtime needs ${MIN_PODMAN_MAJOR} or later`,
      );
    }
    return {
      store: "podman",
      product: `Podman ${version}`,
      imageIdIsManifestDigest: false,
      dockerArchiveManifest: false,
      dieEventFilter: "died",
    };
  }
  const version = facts.info.ServerVersion ?? "(unknown version)";
  if (!(majorOf(version) >= MIN_DOCKER_MAJOR)) {
    throw new EngineUnavailableError(
      `Docker Engine ${version} at ${where} is too old: ociapp-runtime needs ${MIN_DOCKER_MAJOR} or later`,
    );
  }
  const containerd = (facts.info.DriverStatus ?? []).some(
    ([key, value]) => key === "driver-type" && value.includes("io.containerd.snapshotter"),
  );
  return containerd
    ? {
        store: "containerd",
        product: `Docker Engine ${version}`,
        imageIdIsManifestDigest: true,
        dockerArchiveManifest: false,
        dieEventFilter: "die",
      }
    : {
        store: "classic",
        product: `Docker Engine ${version}`,
        imageIdIsManifestDigest: false,
        dockerArchiveManifest: true,
        dieEventFilter: "die",
      };
}

function majorOf(version: string): number {
  return Number(version.split(".")[0]);
}
