import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import {
  createSecureServer,
  createServer,
  type Http2SecureServer,
  type Http2Server,
  type Http2Session,
  type SecureServerOptions,
} from "node:http2";
import type { AddressInfo } from "node:net";
import { DockerEngine } from "../../engines/docker/docker-engine.js";
import type { Engine } from "../../engines/engine.js";
import { OptionsError } from "../../errors.js";
import type { Executor } from "../../executor.js";
import type { RuntimeOptions } from "../../options.js";
import { Runtime } from "../../runtime.js";
import { Tokens } from "./auth.js";
import { type AgentConfig, isLoopback } from "./config.js";
import { AgentHandlers, type ArtifactPuller } from "./handlers.js";
import { AgentMetrics, type AuditSink, flushAudit, stderrAudit } from "./metrics.js";
import { registryPuller } from "./pull.js";
import { ArtifactStore } from "./store.js";

export interface AgentOptions {
  config: AgentConfig;
  /**
   * The executor calls run on. Default: `new Runtime(config.runtime)`. The agent closes it on drain.
   * A call's `signal` is reused for a later call once the call settled without an abort and with no
   * listener left (see CallAborts): the executor must not use it after the call settled.
   */
  executor?: Executor;
  /**
   * Serve plain HTTP/2 without TLS (h2c, RFC 9113 §3.3, prior knowledge). Refused unless
   * `config.listen.host` is a loopback address: tokens never cross a network in the clear.
   */
  insecureLoopback?: boolean;
  /** Where audit records go. Default: one JSON line each on stderr. */
  audit?: AuditSink;
  /** How missing artifacts are pulled. Default: from `config.registries`. */
  puller?: ArtifactPuller;
}

const MAX_HEADER_LIST_BYTES = 16 * 1024;

/**
 * `ociapp-runtime serve`: a LocalExecutor behind HTTP/2 over TLS (RFC 9113; `node:http2`), with
 * bearer tokens, scopes, quotas, a policy capping what clients may set, artifacts by digest
 * (uploaded and verified, or pulled from allowed registries), /healthz, /metrics, an audit line per
 * request, and a drain on SIGTERM. See the package README, "Remote execution".
 */
export class Agent {
  /** The agent's id (in /v1/status). */
  get id(): string {
    return this.handlers.agentId;
  }
  private readonly sessions = new Set<Http2Session>();
  private draining: Promise<void> | undefined;

  private constructor(
    private readonly server: Http2SecureServer | Http2Server,
    private readonly handlers: AgentHandlers,
    readonly executor: Executor,
    readonly store: ArtifactStore,
    readonly config: AgentConfig,
    readonly secure: boolean,
  ) {}

  /** Validates the TLS setup, opens the store, listens. Rejects with OptionsError on a bad setup. */
  static async start(options: AgentOptions): Promise<Agent> {
    const { config } = options;
    if (options.insecureLoopback) {
      if (!isLoopback(config.listen.host)) {
        throw new OptionsError(
          `plain HTTP is only served on a loopback address (listen.host is ${config.listen.host}); configure tls`,
        );
      }
    } else if (config.tls === undefined) {
      throw new OptionsError("the agent needs tls (cert and key) unless --insecure-loopback is given");
    }
    const store = await ArtifactStore.open(config.store);
    const limits = config.limits;
    const settings = { maxConcurrentStreams: limits.maxStreams, maxHeaderListSize: MAX_HEADER_LIST_BYTES };
    let server: Http2SecureServer | Http2Server;
    if (options.insecureLoopback) {
      server = createServer({ settings, maxSessionMemory: 64, noDelay: true } as Parameters<
        typeof createServer
      >[0]);
    } else {
      const tls = config.tls as NonNullable<AgentConfig["tls"]>;
      const read = async (path: string, what: string) => {
        try {
          return await readFile(path);
        } catch (error) {
          throw new OptionsError(`cannot read the TLS ${what} ${path}: ${(error as Error).message}`);
        }
      };
      const secure: SecureServerOptions = {
        cert: await read(tls.cert, "certificate"),
        key: await read(tls.key, "key"),
        allowHTTP1: false,
        minVersion: "TLSv1.2",
        handshakeTimeout: limits.handshakeTimeout,
        settings,
        maxSessionMemory: 64,
        // Calls are small request/answer exchanges: no Nagle delay on either side.
        noDelay: true,
      } as SecureServerOptions;
      if (tls.clientCa !== undefined) {
        secure.ca = await read(tls.clientCa, "client CA");
        secure.requestCert = true;
        secure.rejectUnauthorized = true;
      }
      server = createSecureServer(secure);
    }
    server.maxConnections = limits.maxSessions;
    const executor =
      options.executor ?? new Runtime({ ...runtimeOptions(config), engine: await engineFor(config) });
    const sources = new Map<string, Set<string>>();
    // Connections that have not yet authenticated a request, with the timer that closes them.
    const unauthenticated = new Map<Http2Session, NodeJS.Timeout>();
    const authenticated = (session: Http2Session) => {
      const timer = unauthenticated.get(session);
      if (timer === undefined) return;
      clearTimeout(timer);
      unauthenticated.delete(session);
    };
    const metrics = new AgentMetrics();
    let agent: Agent | undefined;
    const handlers = new AgentHandlers({
      config,
      executor,
      tokens: new Tokens(config.tokens),
      store,
      metrics,
      audit: options.audit ?? stderrAudit,
      puller: options.puller ?? registryPuller(config, store, sources, metrics),
      sources,
      agentId: randomUUID(),
      isDraining: () => agent?.draining !== undefined,
      authenticated,
    });
    agent = new Agent(server, handlers, executor, store, config, !options.insecureLoopback);
    const made = agent;
    server.on("session", (session: Http2Session) => {
      made.sessions.add(session);
      session.setTimeout(limits.idleTimeout, () => session.close());
      // A connection must authenticate a request soon after it starts: else connections without a
      // token would hold limits.maxSessions slots for idleTimeout. Closed with GOAWAY, so a request
      // the client sent meanwhile is refused unrun (RemoteExecutor sends it again on a new
      // connection); its streams were all answered 401 at once, so one still open a second later
      // is not a client's and the connection is destroyed.
      unauthenticated.set(
        session,
        setTimeout(() => {
          session.close();
          setTimeout(() => session.destroy(), 1_000).unref();
        }, limits.authTimeout),
      );
      session.on("error", () => undefined);
      session.on("close", () => {
        authenticated(session);
        made.sessions.delete(session);
      });
    });
    server.on("stream", (stream, headers) => handlers.handle(stream, headers));
    // A TLS handshake that fails (wrong client certificate, plain HTTP) ends that socket only.
    server.on("tlsClientError", () => undefined);
    server.on("sessionError", () => undefined);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(config.listen.port, config.listen.host, () => {
        server.off("error", reject);
        made.port = (server.address() as AddressInfo).port;
        resolve();
      });
    });
    return made;
  }

  /** The port listened on (useful with `listen.port: 0`). */
  port = 0;

  /** `https://host:port` (or `http://` with insecureLoopback). */
  get url(): string {
    const host = this.config.listen.host.includes(":")
      ? `[${this.config.listen.host}]`
      : this.config.listen.host;
    return `${this.secure ? "https" : "http"}://${host}:${this.port}`;
  }

  /**
   * SIGTERM's drain: /healthz and /v1/status say so (503, `draining: true`), new calls are answered
   * 503 (they never run; clients send them to another agent and stop picking this one), calls in
   * flight finish (within limits.drainTimeout), and only then are connections closed (GOAWAY, RFC
   * 9113 §6.8), the executor closed (its own shutdownTimeout) and the listener shut. Connections are
   * left alone while calls run on them: a client receiving GOAWAY closes its side, and streams whose
   * request was still being written would end without an answer. Idempotent.
   */
  drain(): Promise<void> {
    if (!this.draining) {
      this.draining = (async () => {
        const deadline = performance.now() + this.config.limits.drainTimeout;
        while (this.handlers.busy() && performance.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        for (const session of this.sessions) session.close();
        await this.executor.close();
        const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
        for (const session of this.sessions) session.destroy();
        await closed;
        // The last calls' audit lines go out before the agent says it has drained.
        flushAudit();
      })();
    }
    return this.draining;
  }

  /** The same as drain(). */
  close(): Promise<void> {
    return this.drain();
  }
}

/** The agent's runtime section as RuntimeOptions: limits only; network and user keep their defaults. */
/**
 * The engine `config.engine` names. The KubernetesEngine's module (and `@kubernetes/client-node`) is
 * loaded only when it is the one.
 */
async function engineFor(config: AgentConfig): Promise<Engine> {
  const engine = config.engine;
  if (engine.kind === "docker") {
    return new DockerEngine(engine.socketPath === undefined ? undefined : { socketPath: engine.socketPath });
  }
  const { KubernetesEngine } = await import("../../engines/kubernetes/index.js");
  const { kind: _kind, registry, ...rest } = engine;
  let ca: string | undefined;
  if (registry.ca !== undefined) {
    try {
      ca = await readFile(registry.ca, "utf8");
    } catch (error) {
      throw new OptionsError(`cannot read the registry CA ${registry.ca}: ${(error as Error).message}`);
    }
  }
  return new KubernetesEngine({ ...rest, registry: { ...registry, ...(ca === undefined ? {} : { ca }) } });
}

export function runtimeOptions(config: AgentConfig): RuntimeOptions {
  const { container, ...rest } = config.runtime;
  const options: RuntimeOptions = { ...rest };
  if (container !== undefined) options.container = { ...container };
  return options;
}
