import type { Engine } from "../engines/engine.js";
import { LABELS } from "../labels.js";
import { type OwnerIdentity, ownIdentity, parseOwner, provablyDead } from "./owner.js";
import { sweepFolders } from "./runtime-dir.js";

export interface SweepResult {
  containers: number;
  folders: number;
}

export interface SweepOptions {
  self?: OwnerIdentity;
  startOf?: (pid: number) => string | undefined;
}

/**
 * Removes what runtimes that died without close() left behind on this host: labelled containers
 * whose owner label provably names a dead process of this host and PID namespace (see owner.ts),
 * and their folders in the private runtime folder `socketDir` (and nothing outside it). A container
 * whose image itself carries `dev.ociapp.*` labels is never removed: its labels may be the image's,
 * not a runtime's (a plain `docker run` of such an image must not look like an orphan). Best effort:
 * what cannot be removed stays.
 */
export async function sweepOrphans(
  engine: Engine,
  socketDir: string,
  options: SweepOptions = {},
): Promise<SweepResult> {
  const self = options.self ?? ownIdentity();
  const dead = (owner: OwnerIdentity) => provablyDead(owner, self, options.startOf);
  const result: SweepResult = { containers: 0, folders: 0 };
  const containers = await engine.listContainers({ [LABELS.managed]: "true" });
  await Promise.all(
    containers.map(async (container) => {
      const owner = parseOwner(container.labels[LABELS.owner]);
      if (!owner || !dead(owner)) return;
      const imageLabels = await engine.imageLabels(container.image).catch(() => undefined);
      if (!imageLabels || Object.keys(imageLabels).some((key) => key.startsWith(LABEL_PREFIX))) return;
      await engine.removeContainer(container.id).then(
        () => result.containers++,
        () => undefined,
      );
    }),
  );
  result.folders = await sweepFolders(socketDir, dead);
  return result;
}

const LABEL_PREFIX = "dev.ociapp.";
