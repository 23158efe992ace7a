import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { ContainerHandle, Engine, ListedContainer } from "../src/engines/engine.js";
import {
  formatOwner,
  type OwnerIdentity,
  ownIdentity,
  provablyDead,
  startTimeOf,
} from "../src/host/owner.js";
import { writeOwnerRecord } from "../src/host/runtime-dir.js";
import { sweepOrphans } from "../src/host/sweep.js";
import { LABELS } from "../src/labels.js";

class ListingEngine implements Engine {
  removed: string[] = [];
  constructor(
    private readonly containers: ListedContainer[],
    private readonly labelsOfImages: Record<string, Record<string, string>> = {},
  ) {}
  async ping(): Promise<void> {}
  async hasImage(): Promise<boolean> {
    return true;
  }
  async loadImage(): Promise<void> {}
  async createContainer(): Promise<ContainerHandle> {
    throw new Error("not used");
  }
  async startContainer(): Promise<void> {}
  async killContainer(): Promise<void> {}
  async removeContainer(id: string): Promise<void> {
    this.removed.push(id);
  }
  async checkRuntime(): Promise<void> {}
  async imageLabels(reference: string): Promise<Record<string, string>> {
    return this.labelsOfImages[reference] ?? {};
  }
  async listContainers(labels: Record<string, string>): Promise<ListedContainer[]> {
    return this.containers.filter((c) => Object.entries(labels).every(([k, v]) => c.labels[k] === v));
  }
}

/** The pid of a process that has exited. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"]);
  return Number(child.stdout.toString());
}

describe("owner identities", () => {
  it("reads this process's boot id, PID namespace, pid and start time from /proc", () => {
    const self = ownIdentity();
    expect(self.boot).toMatch(/^[0-9a-f-]{36}$/);
    expect(self.pidns).toMatch(/^\d+$/);
    expect(self.pid).toBe(process.pid);
    expect(self.start).toBe(startTimeOf(process.pid));
  });

  it("proves a process dead only on this boot and PID namespace, with pid reuse told apart", () => {
    const self = ownIdentity();
    const dead = deadPid();
    expect(provablyDead({ ...self, pid: dead, start: "1" })).toBe(true);
    // The parent is alive and started when it started; another start time means a reused pid.
    const parent = { ...self, pid: process.ppid, start: startTimeOf(process.ppid) as string };
    expect(provablyDead(parent)).toBe(false);
    expect(provablyDead({ ...parent, start: "1" })).toBe(true);
    expect(provablyDead(self)).toBe(false);
    // Another PID namespace (a replica with the same hostname) or another boot proves nothing.
    expect(provablyDead({ ...self, pidns: "1", pid: dead })).toBe(false);
    expect(provablyDead({ ...self, boot: "00000000-0000-0000-0000-000000000000", pid: dead })).toBe(false);
  });
});

describe("sweepOrphans", () => {
  let dir = "";
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("removes only containers and folders it can prove are orphans of this host and namespace", async () => {
    const self = ownIdentity();
    const dead: OwnerIdentity = { ...self, pid: deadPid(), start: "1" };
    const labelled = (id: string, owner: string, image = "image-a"): ListedContainer => ({
      id,
      state: "running",
      labels: { [LABELS.managed]: "true", [LABELS.owner]: owner },
      image,
    });
    const engine = new ListingEngine(
      [
        labelled("dead-here", formatOwner(dead)),
        labelled(
          "alive-here",
          formatOwner({ ...self, pid: process.ppid, start: startTimeOf(process.ppid) as string }),
        ),
        labelled("mine", formatOwner(self)),
        labelled("other-namespace", formatOwner({ ...dead, pidns: "4026531999" })),
        labelled("other-boot", formatOwner({ ...dead, boot: "00000000-0000-0000-0000-000000000000" })),
        labelled("old-format", `${"host"}:${dead.pid}`),
        // An image that carries dev.ociapp.* labels itself: a plain `docker run` of it inherits them.
        labelled("labels-from-image", formatOwner(dead), "image-with-labels"),
      ],
      { "image-with-labels": { [LABELS.managed]: "true", [LABELS.owner]: formatOwner(dead) } },
    );
    dir = await mkdtemp(join(tmpdir(), "sweep-"));
    await writeOwnerRecord(dir, "0123456789ab", dead);
    await writeOwnerRecord(dir, "ba9876543210", self);
    await mkdir(join(dir, "0123456789ab-AbC123"));
    await mkdir(join(dir, "ba9876543210-AbC124"));
    await mkdir(join(dir, "unrelated"));
    const result = await sweepOrphans(engine, dir);
    expect(engine.removed).toEqual(["dead-here"]);
    expect(result).toEqual({ containers: 1, folders: 1 });
    expect((await readdir(dir)).sort()).toEqual(["ba9876543210-AbC124", "ba9876543210.owner", "unrelated"]);
  });
});
