import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { ContainerHandle, Engine, ListedContainer } from "../src/engines/engine.js";
import { processAlive, sweepOrphans } from "../src/host/sweep.js";
import { LABELS } from "../src/labels.js";

class ListingEngine implements Engine {
  removed: string[] = [];
  constructor(private readonly containers: ListedContainer[]) {}
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
  async listContainers(labels: Record<string, string>): Promise<ListedContainer[]> {
    return this.containers.filter((c) => Object.entries(labels).every(([k, v]) => c.labels[k] === v));
  }
}

/** The pid of a process that has exited. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"]);
  return Number(child.stdout.toString());
}

describe("sweepOrphans", () => {
  let dir = "";
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("removes containers and socket folders of dead processes on this host only", async () => {
    const dead = deadPid();
    expect(processAlive(dead)).toBe(false);
    expect(processAlive(process.pid)).toBe(true);
    const host = hostname();
    const labelled = (id: string, owner: string): ListedContainer => ({
      id,
      state: "running",
      labels: { [LABELS.managed]: "true", [LABELS.owner]: owner },
    });
    const engine = new ListingEngine([
      labelled("dead-here", `${host}:${dead}`),
      labelled("alive-here", `${host}:${process.ppid}`),
      labelled("mine", `${host}:${process.pid}`),
      labelled("dead-elsewhere", `another-host:${dead}`),
      labelled("garbled", "no pid"),
    ]);
    dir = await mkdtemp(join(tmpdir(), "sweep-"));
    await mkdir(join(dir, `${dead}-0123abcd-AbC123`));
    await mkdir(join(dir, `${process.pid}-0123abcd-AbC124`));
    await mkdir(join(dir, "unrelated"));
    const result = await sweepOrphans(engine, dir, host);
    expect(engine.removed).toEqual(["dead-here"]);
    expect(result).toEqual({ containers: 1, folders: 1 });
    expect((await readdir(dir)).sort()).toEqual([`${process.pid}-0123abcd-AbC124`, "unrelated"]);
  });
});
