import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";

const run = promisify(execFile);

/**
 * Network namespaces for fault tests, each held open by a `sleep` that `unshare --net` started (no
 * `ip netns add`: its bind mounts in the shared /run/netns would be left behind by a killed test and
 * hide other tools' mounts). Killing the holder removes the namespace and its end of every veth pair;
 * holders and everything spawned inside get SIGKILL when the test process dies (PR_SET_PDEATHSIG),
 * and holders end by themselves after an hour.
 */
export class Namespace {
  private constructor(
    readonly name: string,
    private readonly holder: ChildProcess,
  ) {}

  static async create(name: string): Promise<Namespace> {
    const holder = spawn(
      "setpriv",
      ["--pdeathsig", "SIGKILL", "--", "unshare", "--net", "--", "sleep", "3600"],
      {
        stdio: "ignore",
      },
    );
    const namespace = new Namespace(name, holder);
    // The namespace exists once the holder runs sleep (unshare execs it): its net link differs from ours.
    const ours = await run("readlink", ["/proc/self/ns/net"]);
    for (let i = 0; i < 100; i++) {
      const theirs = await run("readlink", [`/proc/${holder.pid}/ns/net`]).catch(() => ({ stdout: "" }));
      if (theirs.stdout && theirs.stdout !== ours.stdout) {
        await namespace.ip(["link", "set", "lo", "up"]);
        return namespace;
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    holder.kill("SIGKILL");
    throw new Error(`namespace ${name} did not come up`);
  }

  get pid(): number {
    return this.holder.pid as number;
  }

  /**
   * The command run inside the namespace, killed when this process dies however it dies
   * (PR_SET_PDEATHSIG through setpriv, kept across nsenter's exec).
   */
  enter(command: string[]): string[] {
    return [
      "setpriv",
      "--pdeathsig",
      "SIGKILL",
      "--",
      "nsenter",
      `--net=/proc/${this.pid}/ns/net`,
      "--",
      ...command,
    ];
  }

  async exec(command: string[]): Promise<string> {
    const [file, ...args] = this.enter(command);
    return (await run(file as string, args, { timeout: 30_000 })).stdout;
  }

  ip(args: string[]): Promise<string> {
    return this.exec(["ip", ...args]);
  }

  iptables(args: string[]): Promise<string> {
    return this.exec(["iptables", "-w", "5", ...args]);
  }

  /** Spawns a process inside the namespace. */
  spawn(command: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
    const [file, ...args] = this.enter(command);
    return spawn(file as string, args, { env, stdio: ["pipe", "pipe", "pipe"] });
  }

  destroy(): void {
    if (this.holder.exitCode === null) this.holder.kill("SIGKILL");
  }
}

/**
 * A veth pair between two namespaces with a /30 each side: `a` gets `.1`, `b` gets `.2`. The pair
 * is made in this namespace under random names and moved at once; it goes with either namespace.
 */
export async function link(
  a: Namespace,
  b: Namespace,
  subnet: string,
): Promise<{ a: string; b: string; ifA: string; ifB: string }> {
  const tag = randomBytes(3).toString("hex");
  const ifA = `oa${tag}`;
  const ifB = `ob${tag}`;
  await run("ip", ["link", "add", ifA, "type", "veth", "peer", "name", ifB]);
  try {
    await run("ip", ["link", "set", ifA, "netns", String(a.pid)]);
    await run("ip", ["link", "set", ifB, "netns", String(b.pid)]);
  } catch (error) {
    await run("ip", ["link", "del", ifA]).catch(() => undefined);
    throw error;
  }
  const addressA = `${subnet}.1`;
  const addressB = `${subnet}.2`;
  await a.ip(["addr", "add", `${addressA}/30`, "dev", ifA]);
  await b.ip(["addr", "add", `${addressB}/30`, "dev", ifB]);
  await a.ip(["link", "set", ifA, "up"]);
  await b.ip(["link", "set", ifB, "up"]);
  return { a: addressA, b: addressB, ifA, ifB };
}
