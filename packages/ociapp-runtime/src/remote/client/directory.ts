import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { OptionsError } from "../../errors.js";
import { isLoopback } from "../../util/loopback.js";
import { AgentLink, type LinkOptions } from "./agent-link.js";
import type { StatusReport } from "./remote-executor.js";

export interface DirectoryOptions {
  healthInterval: number;
  resolveInterval: number;
  check: (agent: AgentLink) => Promise<StatusReport>;
}

/** What stats() reports per agent. */
export interface AgentStats {
  url: string;
  address: string;
  agentId: string | undefined;
  healthy: boolean;
  outstanding: number;
  /** HTTP/2 sessions opened to it so far: one, plus one after each that ended, went away or used its reset budget. */
  sessions: number;
  warm: string[];
  lastError: string | undefined;
}

interface Target {
  url: string;
  protocol: "https:" | "http:";
  host: string;
  port: string;
}

/**
 * The agents a RemoteExecutor knows: one AgentLink per address (a configured name that resolves to
 * several addresses gives several), health-checked every healthInterval and re-resolved every
 * resolveInterval (both timers unref'd). A failed check marks the agent unhealthy and drops its
 * connection; a passing one marks it healthy and refreshes its warm digests.
 */
export class AgentDirectory {
  private readonly targets: Target[];
  private readonly byAddress = new Map<string, AgentLink>();
  /** byAddress's links as an array, made again only when the set changes (pick() runs per call). */
  private linkList: AgentLink[] | undefined;
  private readonly statuses = new Map<AgentLink, StatusReport>();
  private readonly checking = new Set<AgentLink>();
  private readonly healthTimer: NodeJS.Timeout;
  private readonly resolveTimer: NodeJS.Timeout | undefined;
  private turn = 0;
  private closed = false;

  constructor(
    agents: string[],
    private readonly link: LinkOptions,
    private readonly options: DirectoryOptions,
  ) {
    this.targets = agents.map(parseTarget);
    let named = false;
    for (const target of this.targets) {
      if (isIP(target.host.replace(/^\[|\]$/g, "")) !== 0) this.add(target, target.url, undefined);
      else named = true;
    }
    // Names are used as they are until their first resolution answers: a call made right away connects by name.
    if (named) {
      for (const target of this.targets) {
        if (isIP(target.host.replace(/^\[|\]$/g, "")) === 0) this.add(target, target.url, undefined);
      }
      void this.resolve();
      this.resolveTimer = setInterval(() => void this.resolve(), options.resolveInterval);
      this.resolveTimer.unref();
    }
    this.healthTimer = setInterval(() => void this.checkAll(), options.healthInterval);
    this.healthTimer.unref();
  }

  get size(): number {
    return this.byAddress.size;
  }

  links(): readonly AgentLink[] {
    this.linkList ??= [...this.byAddress.values()];
    return this.linkList;
  }

  reports(): StatusReport[] {
    return [...this.statuses.values()];
  }

  /**
   * The agent for the next call of `digest`: among agents not yet tried with fewer than
   * `maxOutstanding` calls, healthy ones first (unhealthy ones only when no healthy one is left: a
   * check may be stale), those warm for the digest first, then the fewest outstanding; ties rotate.
   * Undefined when none is left or every one is full.
   */
  pick(digest: string, tried: ReadonlySet<AgentLink>, maxOutstanding: number): AgentLink | undefined {
    let best: AgentLink | undefined;
    let bestRank = Number.POSITIVE_INFINITY;
    const links = this.links();
    const count = links.length;
    this.turn = (this.turn + 1) % Math.max(1, count);
    for (let i = 0; i < count; i++) {
      const link = links[(this.turn + i) % count] as AgentLink;
      if (tried.has(link) || link.outstanding >= maxOutstanding) continue;
      // Rank: unhealthy last, then cold after warm, then by outstanding calls.
      const rank = (link.healthy ? 0 : 2 ** 40) + (link.warm.has(digest) ? 0 : 2 ** 20) + link.outstanding;
      if (rank < bestRank) {
        best = link;
        bestRank = rank;
      }
    }
    return best;
  }

  stats(): AgentStats[] {
    return this.links().map((link) => ({
      url: link.url,
      address: link.address,
      agentId: link.agentId,
      healthy: link.healthy,
      outstanding: link.outstanding,
      sessions: link.sessions,
      warm: [...link.warm],
      lastError: link.lastError,
    }));
  }

  close(): void {
    this.closed = true;
    clearInterval(this.healthTimer);
    clearInterval(this.resolveTimer);
    for (const link of this.byAddress.values()) link.close();
  }

  private add(target: Target, address: string, servername: string | undefined): void {
    if (this.byAddress.has(address)) return;
    this.byAddress.set(address, new AgentLink(target.url, address, servername, this.link));
    this.linkList = undefined;
  }

  private async checkAll(): Promise<void> {
    await Promise.all(
      this.links().map(async (link) => {
        // One check per agent at a time: a slow or unreachable agent must not pile them up.
        if (this.checking.has(link)) return;
        this.checking.add(link);
        try {
          const report = await this.options.check(link);
          if (this.closed) return;
          link.healthy = !report.draining;
          link.agentId = report.agent;
          link.warm.clear();
          for (const artifact of report.artifacts) if (artifact.ready > 0) link.warm.add(artifact.digest);
          this.statuses.set(link, report);
        } catch (error) {
          link.healthy = false;
          link.lastError = (error as Error).message;
          this.statuses.delete(link);
          if (link.outstanding === 0) link.drop();
        } finally {
          this.checking.delete(link);
        }
      }),
    );
  }

  /** Resolves every named target; addresses that appeared get a link, links whose address went away are closed once idle. */
  private async resolve(): Promise<void> {
    for (const target of this.targets) {
      if (isIP(target.host.replace(/^\[|\]$/g, "")) !== 0) continue;
      let addresses: { address: string; family: number }[];
      try {
        addresses = await lookup(target.host, { all: true });
      } catch {
        continue; // keep what we have
      }
      if (this.closed) return;
      const wanted = new Set<string>();
      for (const { address, family } of addresses) {
        if (target.protocol === "http:" && !isLoopback(address)) continue;
        const host = family === 6 ? `[${address}]` : address;
        const url = `${target.protocol}//${host}:${target.port}`;
        wanted.add(url);
        this.add(target, url, target.host);
      }
      // The name itself stood in until now; it and addresses no longer listed go once idle.
      for (const [address, link] of this.byAddress) {
        if (link.url === target.url && !wanted.has(address) && link.outstanding === 0) {
          link.close();
          this.byAddress.delete(address);
          this.linkList = undefined;
          this.statuses.delete(link);
        }
      }
    }
  }
}

function parseTarget(agent: string): Target {
  let url: URL;
  try {
    url = new URL(agent);
  } catch {
    throw new OptionsError(
      `RemoteExecutor agent ${JSON.stringify(agent)} is not a URL such as https://host:8443`,
    );
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new OptionsError(
      `RemoteExecutor agent ${agent} must be https:// (http:// only for a loopback agent)`,
    );
  }
  // An IP literal in 127.0.0.0/8, ::1 or "localhost" (whose addresses resolve() checks too): a name
  // such as 127.example.com is the network's to resolve, and the token would cross it in the clear.
  if (url.protocol === "http:" && !isLoopback(url.hostname)) {
    throw new OptionsError(`RemoteExecutor agent ${agent}: plain http only to a loopback address`);
  }
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  return { url: `${url.protocol}//${url.host}`, protocol: url.protocol, host: url.hostname, port };
}
