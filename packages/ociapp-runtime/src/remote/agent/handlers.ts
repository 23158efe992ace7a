import type { Http2Session, IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";
import { PassThrough } from "node:stream";
import { InvalidRequestError, OciappRuntimeError } from "../../errors.js";
import type { Executor } from "../../executor.js";
import {
  AgentUnavailableError,
  ForbiddenError,
  PayloadTooLargeError,
  UnauthorizedError,
  UnknownArtifactError,
} from "../errors.js";
import {
  answerable,
  BodyBudget,
  ClientGone,
  readBody,
  sendError,
  sendJson,
  sendText,
} from "../http/respond.js";
import { ARTIFACT_ROUTE, asRuntimeError, HEADERS, ROUTES, statusOf } from "../http/wire.js";
import { admit, callOptions, digestInScope, type Principal, release, spend, type Tokens } from "./auth.js";
import { CallAborts } from "./call-aborts.js";
import type { AgentConfig } from "./config.js";
import { type AgentMetrics, type AuditSink, seriesOf } from "./metrics.js";
import type { ArtifactStore } from "./store.js";

/** Gets an artifact the store lacks from one of the token's registries; resolves with its path. */
export type ArtifactPuller = (
  digest: string,
  registries: readonly string[],
  signal: AbortSignal,
) => Promise<string>;

export interface HandlerContext {
  config: AgentConfig;
  executor: Executor;
  tokens: Tokens;
  store: ArtifactStore;
  metrics: AgentMetrics;
  audit: AuditSink;
  puller: ArtifactPuller | undefined;
  /** Registries each held digest is known to be in (filled by pulls). */
  sources: Map<string, Set<string>>;
  agentId: string;
  isDraining: () => boolean;
  /** Called with the connection of every request that authenticated (ends its authTimeout). */
  authenticated?: (session: Http2Session) => void;
}

interface Exchange {
  stream: ServerHttp2Stream;
  headers: IncomingHttpHeaders;
  /** The method and path as audited (the path cut to 64 characters). */
  route: string;
  /** The route as /metrics labels it: one of the agent's routes, or "other". */
  series: string;
  digest: string | null;
  principal: Principal | undefined;
  started: number;
}

/**
 * Routes one HTTP/2 stream. Order matters for the guarantees: /healthz needs nothing; every other
 * route authenticates first (no body is read and nothing reaches the executor before that), then
 * checks scopes, then the token's quota, and only then reads a body, bounded.
 */
export class AgentHandlers {
  private transfers = 0;
  private readonly aborts = new CallAborts();
  private readonly bodies: BodyBudget;

  constructor(private readonly context: HandlerContext) {
    this.bodies = new BodyBudget(context.config.limits.maxBufferedBytes);
  }

  get agentId(): string {
    return this.context.agentId;
  }

  /** True while calls or transfers are being served. */
  busy(): boolean {
    return this.context.metrics.inFlight > 0 || this.transfers > 0;
  }

  handle(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const started = performance.now();
    const method = headers[":method"];
    const rawPath = headers[":path"] ?? "";
    const path = rawPath.split("?", 1)[0] as string;
    stream.on("error", () => undefined); // a reset stream is reported through 'close'
    if (path === ROUTES.healthz && (method === "GET" || method === "HEAD")) {
      const draining = this.context.isDraining();
      sendJson(stream, draining ? 503 : 200, { status: draining ? "draining" : "ok" });
      return;
    }
    const match = ARTIFACT_ROUTE.exec(path);
    const exchange: Exchange = {
      stream,
      headers,
      route: match ? `${method} /v1/artifacts/${match[2] ?? ""}` : `${method} ${path.slice(0, 64)}`,
      series: seriesOf(method, path, match),
      digest: match?.[1] ?? null,
      principal: this.context.tokens.authenticateOn(stream.session, headers.authorization),
      started,
    };
    if (exchange.principal === undefined) {
      this.context.metrics.authFailures++;
      this.fail(exchange, new UnauthorizedError());
      return;
    }
    if (stream.session !== undefined) this.context.authenticated?.(stream.session);
    this.route(exchange, method, path, match).catch((error: unknown) => this.fail(exchange, error));
  }

  private async route(
    exchange: Exchange,
    method: string | undefined,
    path: string,
    match: RegExpExecArray | null,
  ): Promise<void> {
    if (path === ROUTES.status && method === "GET") return this.status(exchange);
    if (path === ROUTES.metrics && method === "GET") {
      const principal = exchange.principal as Principal;
      if (!principal.config.scopes.metrics) {
        throw new ForbiddenError(`token ${principal.id} may not read /metrics (scopes.metrics)`);
      }
      const { executor, store, metrics, isDraining } = this.context;
      sendText(
        exchange.stream,
        200,
        metrics.render(executor.stats(), isDraining(), store.size),
        "text/plain; version=0.0.4",
      );
      return this.done(exchange, 200, "ok");
    }
    if (!match)
      throw Object.assign(new InvalidRequestError(`no route ${method} ${path.slice(0, 64)}`), {
        status: 404,
      });
    const digest = match[1] as string;
    const action = match[2];
    if (action === undefined && (method === "HEAD" || method === "GET")) return this.head(exchange, digest);
    if (action === undefined && method === "PUT") return this.upload(exchange, digest);
    if (method !== "POST")
      throw Object.assign(new InvalidRequestError(`no route ${method} ${path}`), { status: 405 });
    if (action === "execute") return this.execute(exchange, digest);
    if (action === "warm" || action === "pull") return this.warm(exchange, digest, action === "warm");
    if (action === "drain") return this.drain(exchange, digest);
  }

  private async execute(exchange: Exchange, digest: string): Promise<void> {
    const { context } = this;
    const principal = exchange.principal as Principal;
    const { stream, headers } = exchange;
    if (context.isDraining()) throw new AgentUnavailableError("the agent is draining; the call did not run");
    const options = callOptions(
      principal,
      headers[HEADERS.settings] as string | undefined,
      context.config.policy,
    );
    const abort = this.aborts.take();
    // A stream that closes before the call has settled was reset by the client: the call is aborted
    // (its container gets a cancel frame). writableEnded is no guide: a reset ends the writable side
    // too. Listened to before a pull: a call reset during its pull must not be admitted, or it would
    // hold its quota slot until bodyTimeout (its body will never come).
    let settled = false;
    const onClose = () => {
      if (!settled) abort.abort(new ClientGone("the client reset the stream"));
    };
    stream.once("close", onClose);
    let admitted = false;
    try {
      const path = context.store.pathOf(digest);
      const artifact =
        path !== undefined && this.mayRun(principal, digest) ? path : await this.obtain(principal, digest);
      if (abort.signal.aborted || stream.closed) throw new ClientGone("the client reset the stream");
      admit(principal, performance.now());
      admitted = true;
      context.metrics.inFlight++;
      const body = await readBody(
        stream,
        headers,
        context.config.policy.maxPayloadBytes,
        context.config.limits.bodyTimeout,
        this.bodies,
      );
      let payload: unknown;
      try {
        payload = body.length === 0 ? null : JSON.parse(body.toString("utf8"));
      } catch {
        throw new InvalidRequestError("the request body is not JSON");
      }
      const result = await context.executor.execute(artifact, payload, { ...options, signal: abort.signal });
      settled = true;
      if (!answerable(stream)) throw new ClientGone("the client reset the stream");
      sendText(stream, 200, JSON.stringify(result) ?? "null", "application/json");
      context.metrics.observe(performance.now() - exchange.started);
      this.done(exchange, 200, "ok");
    } finally {
      settled = true;
      stream.off("close", onClose);
      if (admitted) {
        context.metrics.inFlight--;
        release(principal);
      }
      this.aborts.give(abort);
    }
  }

  private async upload(exchange: Exchange, digest: string): Promise<void> {
    const principal = exchange.principal as Principal;
    const { config, store, metrics } = this.context;
    if (this.context.isDraining()) throw new AgentUnavailableError("the agent is draining");
    if (!principal.config.scopes.upload || !digestInScope(principal, digest)) {
      throw new ForbiddenError(`token ${principal.id} may not upload ${digest}`);
    }
    spend(principal, performance.now());
    if (store.pathOf(digest) !== undefined) {
      sendJson(exchange.stream, 200, { digest, stored: false });
      return this.done(exchange, 200, "ok");
    }
    this.beginTransfer();
    const abort = new AbortController();
    const onClose = () => abort.abort(new ClientGone("the client reset the upload"));
    exchange.stream.once("close", onClose);
    exchange.stream.on("data", (chunk: Buffer) => {
      metrics.uploadBytes += chunk.length;
    });
    try {
      const declared = Number(exchange.headers["content-length"] ?? Number.NaN);
      if (declared > config.policy.maxUploadBytes) {
        throw new PayloadTooLargeError(config.policy.maxUploadBytes);
      }
      // Through a PassThrough: a failed pipeline destroys its streams, and the HTTP/2 stream must
      // live on to carry the error answer.
      const body = new PassThrough();
      exchange.stream.pipe(body);
      await store.receive(digest, body, {
        maxBytes: config.policy.maxUploadBytes,
        stallTimeout: config.limits.uploadStallTimeout,
        timeout: config.limits.uploadTimeout,
        signal: abort.signal,
      });
      metrics.uploads++;
      sendJson(exchange.stream, 201, { digest, stored: true });
      this.done(exchange, 201, "ok");
    } finally {
      exchange.stream.unpipe();
      exchange.stream.off("close", onClose);
      this.transfers--;
    }
  }

  private async head(exchange: Exchange, digest: string): Promise<void> {
    const principal = exchange.principal as Principal;
    if (!this.mayRun(principal, digest) && !this.registriesOf(principal).length) {
      throw new ForbiddenError(`token ${principal.id} may not run ${digest}`);
    }
    const held = this.context.store.pathOf(digest) !== undefined && this.mayRun(principal, digest);
    if (!held) throw new UnknownArtifactError(digest);
    sendJson(exchange.stream, 200, { digest, held: true });
    this.done(exchange, 200, "ok");
  }

  private async warm(exchange: Exchange, digest: string, start: boolean): Promise<void> {
    const principal = exchange.principal as Principal;
    if (this.context.isDraining()) throw new AgentUnavailableError("the agent is draining");
    // The token's rate bounds warm and pull requests too: each may pull an artifact or start containers.
    spend(principal, performance.now());
    const path = this.context.store.pathOf(digest);
    const artifact =
      path !== undefined && this.mayRun(principal, digest) ? path : await this.obtain(principal, digest);
    if (start) await this.context.executor.warm(artifact);
    sendJson(exchange.stream, 200, { digest, held: true });
    this.done(exchange, 200, "ok");
  }

  private async drain(exchange: Exchange, digest: string): Promise<void> {
    const principal = exchange.principal as Principal;
    if (!principal.config.scopes.drain || !this.mayRun(principal, digest)) {
      throw new ForbiddenError(`token ${principal.id} may not drain ${digest}`);
    }
    const path = this.context.store.pathOf(digest);
    if (path !== undefined) await this.context.executor.drain(path);
    sendJson(exchange.stream, 200, { digest, drained: true });
    this.done(exchange, 200, "ok");
  }

  private status(exchange: Exchange): void {
    const principal = exchange.principal as Principal;
    const { executor, agentId, isDraining, metrics } = this.context;
    const artifacts = executor
      .stats()
      .artifacts.filter((artifact) => this.mayRun(principal, artifact.digest))
      .map(({ digest, instances, inFlight, queued }) => ({
        digest,
        ready: instances.ready,
        inFlight,
        queued,
      }));
    sendJson(exchange.stream, 200, {
      agent: agentId,
      draining: isDraining(),
      inFlight: metrics.inFlight,
      artifacts,
    });
    this.done(exchange, 200, "ok");
  }

  /** The token may run a digest it names, or one held from a registry it may use. */
  private mayRun(principal: Principal, digest: string): boolean {
    if (digestInScope(principal, digest)) return true;
    const sources = this.context.sources.get(digest);
    return sources !== undefined && this.registriesOf(principal).some((name) => sources.has(name));
  }

  private registriesOf(principal: Principal): readonly string[] {
    return principal.config.scopes.registries;
  }

  /**
   * The path of an artifact the store lacks (or holds from an upload the token's digests do not
   * cover): pulled from the token's registries when it has any and a puller is configured; else
   * 404 for a digest in scope (the client may upload it) and 403 for one out of scope.
   */
  private async obtain(principal: Principal, digest: string): Promise<string> {
    const registries = this.registriesOf(principal);
    const { puller, store } = this.context;
    if (registries.length === 0 || puller === undefined) {
      if (!digestInScope(principal, digest))
        throw new ForbiddenError(`token ${principal.id} may not run ${digest}`);
      const held = store.pathOf(digest);
      if (held !== undefined) return held;
      throw new UnknownArtifactError(digest);
    }
    this.beginTransfer();
    try {
      const signal = AbortSignal.timeout(this.context.config.limits.pullTimeout);
      return await puller(digest, registries, signal);
    } finally {
      this.transfers--;
    }
  }

  private beginTransfer(): void {
    if (this.transfers >= this.context.config.limits.maxTransfers) {
      throw new AgentUnavailableError(
        `the agent is already receiving ${this.transfers} artifacts (limits.maxTransfers); try again`,
      );
    }
    this.transfers++;
  }

  private fail(exchange: Exchange, error: unknown): void {
    if (error instanceof ClientGone || (error as { name?: string })?.name === "AbortError") {
      this.done(exchange, 499, "CLIENT_GONE");
      return;
    }
    const failure = asRuntimeError(error);
    if (!(error instanceof OciappRuntimeError)) {
      process.emitWarning(`ociapp agent: ${String((error as Error)?.stack ?? error)}`);
    }
    // A route that does not exist answers 404/405 with the code of a bad request.
    const status = (error as { status?: number }).status ?? statusOf(failure);
    sendError(exchange.stream, failure, status);
    this.done(exchange, status, failure.code);
  }

  private done(exchange: Exchange, status: number, outcome: string): void {
    const token = exchange.principal?.id ?? null;
    this.context.metrics.count(exchange.series, token ?? "-", outcome);
    this.context.audit({
      time: new Date().toISOString(),
      token,
      route: exchange.route,
      digest: exchange.digest,
      outcome,
      status,
      durationMs: Math.round((performance.now() - exchange.started) * 1000) / 1000,
      peer: exchange.stream.session?.socket?.remoteAddress ?? "",
    });
  }
}
