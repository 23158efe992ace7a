import type { Engine } from "../engines/engine.js";
import { LABELS } from "../labels.js";
import { sweepFolders } from "./runtime-dir.js";

/** true while a process with that pid exists on this host (EPERM: it exists, owned by someone else). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

export interface SweepResult {
  containers: number;
  folders: number;
}

/**
 * Removes what runtimes that died without close() left behind on this host: labelled containers
 * whose owner label names this host and a process that is gone, and their folders in the private
 * runtime folder `socketDir` (and nothing outside it). Containers of other hosts are left alone. Best effort: what cannot be removed stays.
 */
export async function sweepOrphans(
  engine: Engine,
  socketDir: string,
  host: string,
  alive: (pid: number) => boolean = processAlive,
): Promise<SweepResult> {
  const result: SweepResult = { containers: 0, folders: 0 };
  const dead = (pid: number) => pid !== process.pid && !alive(pid);
  const containers = await engine.listContainers({ [LABELS.managed]: "true" });
  await Promise.all(
    containers.map(async (container) => {
      const owner = container.labels[LABELS.owner] ?? "";
      const separator = owner.lastIndexOf(":");
      const pid = Number(owner.slice(separator + 1));
      if (separator <= 0 || owner.slice(0, separator) !== host || !Number.isSafeInteger(pid)) return;
      if (!dead(pid)) return;
      await engine.removeContainer(container.id).then(
        () => result.containers++,
        () => undefined,
      );
    }),
  );
  result.folders = await sweepFolders(socketDir, dead);
  return result;
}
