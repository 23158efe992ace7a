import { readFileSync, readlinkSync } from "node:fs";

/**
 * Who owns a runtime's containers, unique across hosts, boots and PID namespaces:
 * `<boot id>/<pid namespace>/<pid>/<start time>`. The boot id (`/proc/sys/kernel/random/boot_id`)
 * tells this kernel's boot from any other host's or boot's (hostnames repeat: replicas of one
 * service share theirs); the PID namespace (`/proc/self/ns/pid`) tells replicas in other
 * namespaces apart, whose pids mean nothing here; the start time (field 22 of `/proc/<pid>/stat`,
 * clock ticks since boot) tells a process from a later one that reused its pid. Source: proc(5).
 */
export interface OwnerIdentity {
  boot: string;
  pidns: string;
  pid: number;
  start: string;
}

export function formatOwner(owner: OwnerIdentity): string {
  return `${owner.boot}/${owner.pidns}/${owner.pid}/${owner.start}`;
}

/** The owner label's value parsed, or undefined when it is not one this runtime writes. */
export function parseOwner(value: string | undefined): OwnerIdentity | undefined {
  const match = /^([0-9a-f-]{36})\/(\d+)\/(\d+)\/(\d+)$/.exec(value ?? "");
  if (!match) return undefined;
  const pid = Number(match[3]);
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  return { boot: match[1] as string, pidns: match[2] as string, pid, start: match[4] as string };
}

/** A process's start time (clock ticks since boot), or undefined when there is no such process. */
export function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: fields are counted after the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[19];
  } catch {
    return undefined;
  }
}

let own: OwnerIdentity | undefined;

/** This process's identity (read once). */
export function ownIdentity(): OwnerIdentity {
  if (!own) {
    const boot = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    const pidns = /\[(\d+)\]/.exec(readlinkSync("/proc/self/ns/pid"))?.[1] ?? "0";
    own = { boot, pidns, pid: process.pid, start: startTimeOf(process.pid) ?? "0" };
  }
  return own;
}

/**
 * True only when `owner` provably names a process of this host (same boot, same PID namespace) that
 * is gone: its pid is free, or taken by a process that started at another time. Anything else (another
 * host, another namespace, a live owner, a value this runtime does not write) is not provable.
 */
export function provablyDead(
  owner: OwnerIdentity,
  self: OwnerIdentity = ownIdentity(),
  startOf: (pid: number) => string | undefined = startTimeOf,
): boolean {
  if (owner.boot !== self.boot || owner.pidns !== self.pidns) return false;
  if (owner.pid === self.pid && owner.start === self.start) return false;
  return startOf(owner.pid) !== owner.start;
}
