// Scale from zero with a standby (the Runtime's `standby` option): the artifact's last container was
// stopped (drain(), as the reaper does after idleTimeout), a standby container was created ahead of
// demand, and a call arrives. Interleaved rounds beside the same call without a standby (a full cold
// start on a Runtime that has everything else ready). Also what a standby costs while it waits.
// Run alone: node --conditions=source --import tsx bench/standby.ts <artifact.ociapp>

import Dockerode from "dockerode";
import { Runtime } from "ociapp-runtime";
import { type Spread, spread } from "./coldstart.js";
import { round, timeIt } from "./measure.js";

const PAYLOAD = { value: "hello" };
const docker = new Dockerode();

/** This runtime's containers in the engine's "created" state (standby ones). */
async function created(runtime: Runtime): Promise<Dockerode.ContainerInfo[]> {
  return docker.listContainers({
    all: true,
    size: true,
    filters: { label: [`dev.ociapp.runtime=${runtime.id}`], status: ["created"] },
  });
}

async function until(check: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("timed out waiting for the standby container");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** One round: first call, drain to zero, (standby created), then the timed call from zero. */
async function fromZero(artifact: string, standby: number): Promise<number> {
  const runtime = new Runtime({ standby, reaperInterval: 100 });
  try {
    await runtime.execute(artifact, PAYLOAD);
    await runtime.drain(artifact);
    if (standby > 0) await until(async () => (await created(runtime)).length > 0);
    // The create's own engine work settles before the call (as it would in the idle time).
    await new Promise((resolve) => setTimeout(resolve, 200));
    return (await timeIt(() => runtime.execute(artifact, PAYLOAD))).ms;
  } finally {
    await runtime.close();
  }
}

/** CPU ticks (1/100 s) used so far by the engine's daemons (dockerd, containerd). */
async function engineTicks(): Promise<number> {
  const { readdir, readFile } = await import("node:fs/promises");
  let ticks = 0;
  for (const pid of await readdir("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
    const name = /\(([^)]*)\)/.exec(stat)?.[1] ?? "";
    if (name !== "dockerd" && name !== "containerd") continue;
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks;
}

export interface StandbyFigures {
  /** The call that finds no container, with a standby created ahead. */
  withStandbyMs: Spread;
  /** The same call without a standby: create + start + handshake. */
  withoutStandbyMs: Spread;
  idle: {
    /** The standby container's writable layer on the engine's disk (bytes). */
    diskBytes: number;
    /** Processes it runs while it waits (a created container runs none): no memory, no CPU. */
    processes: number;
    /** CPU the engine's daemons used over `windowMs` with the standby waiting, and without (ms). */
    engineCpuMs: { withStandby: number; without: number; windowMs: number };
  };
}

export async function measureStandby(
  artifact: string,
  rounds: number,
  log: (line: string) => void = () => undefined,
): Promise<StandbyFigures> {
  const withStandby: number[] = [];
  const without: number[] = [];
  for (let i = 0; i < rounds; i++) {
    for (const standby of i % 2 === 0 ? [1, 0] : [0, 1]) {
      const ms = await fromZero(artifact, standby);
      (standby ? withStandby : without).push(ms);
      log(`standby: round ${i + 1} ${standby ? "with" : "without"} a standby: ${ms} ms from zero`);
    }
  }
  const windowMs = 5_000;
  const idleCpu = async () => {
    // The engine settles first (the rounds' removals, the standby's create).
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const before = await engineTicks();
    await new Promise((resolve) => setTimeout(resolve, windowMs));
    return ((await engineTicks()) - before) * 10;
  };
  const baseline = await idleCpu();
  const runtime = new Runtime({ standby: 1, reaperInterval: 100 });
  try {
    await runtime.execute(artifact, PAYLOAD);
    await runtime.drain(artifact);
    await until(async () => (await created(runtime)).length > 0);
    const [info] = await created(runtime);
    const top = await docker
      .getContainer(info?.Id ?? "")
      .top()
      .catch(() => ({ Processes: [] }));
    const withOne = await idleCpu();
    return {
      withStandbyMs: spread(withStandby),
      withoutStandbyMs: spread(without),
      idle: {
        diskBytes: (info as { SizeRw?: number } | undefined)?.SizeRw ?? 0,
        processes: (top as { Processes?: unknown[] }).Processes?.length ?? 0,
        engineCpuMs: { withStandby: round(withOne), without: round(baseline), windowMs },
      },
    };
  } finally {
    await runtime.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const artifact = process.argv[2];
  if (!artifact) throw new Error("usage: bench/standby.ts <artifact.ociapp>");
  const figures = await measureStandby(artifact, Number(process.env.ROUNDS ?? 3), (line) =>
    process.stderr.write(`[bench] ${line}\n`),
  );
  console.log(JSON.stringify(figures, null, 2));
}
